"""Templates render to what the hosts need: valid YAML, shell scripts that parse, values quoted."""

import hashlib
import shlex
import os
import subprocess

import pytest
import yaml

from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT
from regdeploy.daemon_config import render as render_json
from regdeploy.rendering import render
from regdeploy.settings import validate_hosts
from regdeploy.registry_plan import CONTAINER_PORT, STORAGE_TARGET, Migration, RegistryPlan, Storage
from regdeploy.registry_files import registry_config, server_script
from regdeploy.registry_run import container_spec_hash, desired_container, run_script

# The three modes: the manual's plain HTTP, TLS, TLS with authentication.
MODES = [{"registry_tls": False, "registry_auth": False}, {"registry_tls": True, "registry_auth": False},
         {"registry_tls": True, "registry_auth": True}]


def server_settings(**data):
    if data.get("registry_auth"):
        data.setdefault("registry_users", ["ci"])
    return validate_hosts([("reg1", data, {"registry_servers"})], check_files=False)["reg1"]


def _sh_syntax_ok(script: str) -> None:
    # dash is /bin/sh on Debian and Ubuntu, where pyinfra runs these scripts.
    result = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_registry_config_serves_storage_from_the_mounted_directory():
    # The host's registry_data_dir is mounted on the image's own storage path: config.yml names that.
    config = yaml.safe_load(registry_config(server_settings(registry_data_dir="/srv/registry")))
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry" == STORAGE_TARGET
    assert config["http"]["addr"] == ":5000" == f":{CONTAINER_PORT}"


@pytest.mark.parametrize("action", ["reload", "restart"])
@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("secure", [True, False])
def test_apply_script_parses_and_uses_the_right_systemctl_verb(action, validate, secure):
    script = render("apply-daemon-json.sh.j2", path="/etc/docker/daemon.json", action=action, validate=validate,
                    registry="registry:5000", content=render_json({"insecure-registries": ["registry:5000"]}),
                    insecure_registries_format=INSECURE_REGISTRIES_FORMAT, secure=secure)
    _sh_syntax_ok(script)
    assert f"systemctl {action} docker ||" in script
    # Whether dockerd checks the file is decided once, in Python (daemon_config.can_validate).
    assert ("dockerd --validate" in script) == validate
    assert ("systemctl restart docker ||" in script) == (action == "restart")
    assert shlex.quote(INSECURE_REGISTRIES_FORMAT) in script
    # TLS: the script waits until dockerd no longer lists the registry as insecure; else until it does.
    assert ("Docker still lists registry:5000 as an insecure registry" in script) == secure


def test_shell_values_are_quoted():
    script = render("apply-daemon-json.sh.j2", path="/etc/docker/my daemon.json", action="reload", validate=True,
                    registry="r:5000", content="{}\n",
                    insecure_registries_format=INSECURE_REGISTRIES_FORMAT, secure=False)
    assert "current='/etc/docker/my daemon.json'" in script
    _sh_syntax_ok(script)


def test_apply_script_stages_the_json_byte_for_byte(tmp_path):
    content = render_json({"log-opts": {"max-size": "10m"}, "labels": ["a=$HOME", "b=`x`"],
                           "insecure-registries": ["registry:5000"]})
    script = render("apply-daemon-json.sh.j2", path=str(tmp_path / "daemon.json"), action="reload", validate=False,
                    registry="registry:5000", content=content,
                    insecure_registries_format=INSECURE_REGISTRIES_FORMAT, secure=False)
    # Run just the staging part (up to the swap) against a temporary directory.
    staging = script.split("had_current=0")[0]
    subprocess.run(["sh", "-c", staging], check=True)
    assert (tmp_path / "daemon.json.regdeploy-new").read_text() == content


PLANS = [
    RegistryPlan("create"),
    RegistryPlan("create", clear_aside=True),
    RegistryPlan("start", ("it is stopped",)),
    RegistryPlan("recreate", ("ports: 5000->5000 -> 5001->5000",), previous_restart="always"),
    RegistryPlan("adopt", ("found image registry:2",), previous_restart="always",
                 migration=Migration(Storage("volume", "/var/lib/docker/volumes/v/_data", "v"), "/var/lib/registry",
                                     repositories=2, bytes=10, redo_partial=True)),
]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "+".join(k for k, v in m.items() if v) or "plain")
@pytest.mark.parametrize("plan", PLANS, ids=lambda p: p.action)
def test_run_registry_script_parses_for_every_plan(plan, mode):
    settings = server_settings(**mode)
    desired = desired_container(settings, "/etc/regdeploy/config.yml", "a" * 64)
    script = run_script(settings, plan, desired, aside="registry.aside", notice=plan.notice("registry", "registry.aside"))
    _sh_syntax_ok(script)
    # The data move happens before the old container is set aside, and only when planned.
    assert ("cp -a" in script) == bool(plan.migration)
    if plan.migration:
        assert script.index("cp -a") < script.index('docker rename "$name" "$aside"')
    # Only regdeploy's own previous container is removed; an adopted one is kept.
    assert ('docker rm "$aside"' in script) == (plan.action == "recreate")
    # The TLS and htpasswd directories are mounted read-only, into the verifier of a data move too.
    if plan.action != "start":
        mounts = ["/etc/regdeploy/tls:/certs:ro"] * mode["registry_tls"] + ["/etc/regdeploy/auth:/auth:ro"] * mode["registry_auth"]
        for mount in mounts:
            assert script.count(f"-v {mount}") == 1 + bool(plan.migration), mount


@pytest.mark.parametrize("check", [True, False])
def test_load_script_parses(check):
    script = render("load-image-archive.sh.j2", archive="/var/cache/regdeploy/r.tar", sha256="0" * 64,
                    image="registry:2", check=check)
    _sh_syntax_ok(script)
    assert ("sha256sum -c" in script) == check


@pytest.mark.parametrize("matches", [True, False])
def test_the_archive_check_passes_only_the_pinned_content(tmp_path, matches):
    archive = tmp_path / "registry 2.tar"
    archive.write_bytes(b"layers")
    digest = hashlib.sha256(b"layers" if matches else b"other").hexdigest()
    result = subprocess.run(["sh", "-c", render("check-archive.sh.j2", archive=str(archive), sha256=digest)],
                            capture_output=True, text=True)
    assert result.returncode == (0 if matches else 1)
    assert ("does not match SHA-256 " + digest in result.stderr) != matches


def test_container_spec_hash_changes_exactly_with_the_spec():
    settings = validate_hosts([("reg1", {}, {"registry_servers"})])["reg1"]
    ports, volumes = ["5000:5000"], ["/var/lib/registry:/var/lib/registry"]
    base = container_spec_hash(settings, ports, volumes, "a" * 64)
    assert container_spec_hash(settings, list(ports), list(volumes), "a" * 64) == base
    assert container_spec_hash(settings, ["5001:5000"], volumes, "a" * 64) != base
    assert container_spec_hash(settings, ports, ["/srv:/var/lib/registry"], "a" * 64) != base
    assert container_spec_hash(settings, ports, volumes, "b" * 64) != base
    other_policy = validate_hosts([("reg1", {"registry_restart_policy": "unless-stopped"},
                                    {"registry_servers"})])["reg1"]
    assert container_spec_hash(other_policy, ports, volumes, "a" * 64) != base


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "+".join(k for k, v in m.items() if v) or "plain")
@pytest.mark.parametrize("template,dry_run", [
    ("registry-backup.sh.j2", False), ("registry-restore.sh.j2", False), ("registry-catalog.sh.j2", False),
    ("registry-gc.sh.j2", False), ("registry-gc.sh.j2", True)])
def test_server_scripts_parse(template, dry_run, mode):
    settings = server_settings(**mode)
    script = server_script(settings, template, "regdeploy backup on ctl (pid 1)", page_size=100,
                           delete_untagged=True, dry_run=dry_run)
    _sh_syntax_ok(script)
    if template == "registry-gc.sh.j2":
        # A dry run never switches the registry to read-only, so never restarts it.
        assert ("if ! enter_readonly; then" in script) != dry_run
        assert ("garbage-collect --dry-run" in script) == dry_run
    # Every API call goes through api_curl: the name clients use, rerouted to loopback, CA and credentials.
    assert " curl " not in script.replace("api_curl() { curl", "")
    assert ("--cacert" in script) == mode["registry_tls"]
    assert ("--config /etc/regdeploy/api-credentials" in script) == mode["registry_auth"]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: "+".join(k for k, v in m.items() if v) or "plain")
def test_registry_config_in_each_mode(mode):
    settings = server_settings(**mode)
    config = yaml.safe_load(registry_config(settings))
    assert config["storage"]["delete"]["enabled"] is False  # off unless registry_allow_delete
    assert config["http"].get("tls") == ({"certificate": "/certs/registry.crt", "key": "/certs/registry.key"}
                                         if mode["registry_tls"] else None)
    assert config.get("auth") == ({"htpasswd": {"realm": "regdeploy", "path": "/auth/htpasswd"}}
                                  if mode["registry_auth"] else None)
    assert yaml.safe_load(registry_config(server_settings(registry_allow_delete=True, **mode))
                          )["storage"]["delete"]["enabled"] is True
    assert yaml.safe_load(registry_config(settings, readonly=True))["storage"]["maintenance"]["readonly"] == \
        {"enabled": True}


def test_put_file_writes_a_secret_from_stdin_with_its_mode_from_the_start(tmp_path):
    target = tmp_path / "tls" / "registry.key"
    script = render("put-file.sh.j2", path=str(target), mode="600", content=None, dir_mode="700",
                    stamp="ci $2b$10$x", stamp_path=str(tmp_path / "stamp"))
    # The secret is never in the script (the command line), only on stdin.
    subprocess.run(["sh", "-c", script], input="-----BEGIN PRIVATE KEY-----\nsecret\n", text=True, check=True)
    assert target.read_text() == "-----BEGIN PRIVATE KEY-----\nsecret\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600" and oct(target.parent.stat().st_mode & 0o777) == "0o700"
    assert (tmp_path / "stamp").read_text() == "ci $2b$10$x\n"
    assert "umask 077" in script.split("cat >")[0], "the file must never exist with a wider mode"
    public = render("put-file.sh.j2", path=str(tmp_path / "ca.crt"), mode="644", content="CA $x `y`\n")
    subprocess.run(["sh", "-c", public], check=True)
    assert (tmp_path / "ca.crt").read_text() == "CA $x `y`\n"


def test_the_login_script_hands_the_password_to_each_runtime_on_stdin_only(tmp_path):
    """Run against stand-in docker and podman that record their arguments and stdin."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "podman"):
        stand_in = bin_dir / tool
        stand_in.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{tmp_path}/{tool}.args"\ncat > "{tmp_path}/{tool}.stdin"\n')
        stand_in.chmod(0o755)
    password = "pa ss'$(id)\"x"
    script = render("registry-login.sh.j2", registry="registry:5000", user="ci", stamp="ci $2b$10$x",
                    docker={"config_dir": str(tmp_path / "docker"), "stamp_path": str(tmp_path / "docker-stamp")},
                    podman={"auth_file": str(tmp_path / "containers" / "auth.json"),
                            "stamp_path": str(tmp_path / "podman-stamp")})
    (tmp_path / "containers").mkdir()
    (tmp_path / "containers" / "auth.json").write_text("{}")
    subprocess.run(["sh", "-c", script], input=password + "\n", text=True, check=True,
                   env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    for tool in ("docker", "podman"):
        assert (tmp_path / f"{tool}.stdin").read_text() == password + "\n"
        args = (tmp_path / f"{tool}.args").read_text()
        assert "--password-stdin" in args and password not in args and "ci" in args
        assert (tmp_path / f"{tool}-stamp").read_text() == "ci $2b$10$x\n"
    assert oct((tmp_path / "containers" / "auth.json").stat().st_mode & 0o777) == "0o600"