"""Templates render to what the hosts need: valid YAML, shell scripts that parse, values quoted."""

import hashlib
import shlex
import os
import subprocess
import tomllib

import pytest
import yaml

from regdeploy import registry_files, runtime_config
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
    # What the registry reads only at start: its certificate, and the token signing certificate it trusts.
    with_cert = container_spec_hash(settings, ports, volumes, "a" * 64, "c" * 64)
    assert with_cert != base
    signed = container_spec_hash(settings, ports, volumes, "a" * 64, "c" * 64, "d" * 64)
    assert signed not in (base, with_cert)
    assert container_spec_hash(settings, ports, volumes, "a" * 64, "c" * 64, "e" * 64) != signed


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
                            "stamp_path": str(tmp_path / "podman-stamp")}, containerd=None)
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

def containerd_stand_ins(tmp_path, restart_fails=False) -> dict:
    """containerd (`config dump`: records what it was given, and that it was given no secret on its
    command line), systemctl (active, restart recorded) and ctr (answers)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    scripts = {
        "containerd": f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{tmp_path}/calls"\ncp "$2" "{tmp_path}/dumped"\n',
        "systemctl": f'#!/bin/sh\nprintf "systemctl %s\\n" "$*" >> "{tmp_path}/calls"\n'
                     f'case "$1" in restart) {"exit 1" if restart_fails else "exit 0"} ;; esac\n',
        "ctr": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


CURRENT_TOML = '''version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."other:443".auth]
  username = "them"
  password = "their-secret"
'''


@pytest.mark.parametrize("restart_fails", [False, True])
def test_the_containerd_login_puts_back_masked_lines_and_the_password_from_stdin(tmp_path, restart_fails):
    """The login script with containerd: the planned config.toml comes with the operator's secret masked
    and regdeploy's password as a placeholder; the file written has both, mode 600, and the stamp. A
    restart that fails brings the old file back."""
    config = tmp_path / "config.toml"
    config.write_text(CURRENT_TOML)
    config.chmod(0o644)
    password = 'pa "ss\\ $(id)'
    masked = CURRENT_TOML.replace('"their-secret"', runtime_config.MASKED.format(4))
    plan = runtime_config.plan_containerd_config(masked, 1, "host 'c'", "registry:5000",
                                                 runtime_config.ContainerdLogin("nodes", current=False))
    apply = render("apply-containerd-config.sh.j2", path=str(config), content=plan.content, login=True,
                   stamp="nodes $2b$10$x", stamp_path=str(tmp_path / "stamp"),
                   password_on_stdin=runtime_config.PASSWORD_ON_STDIN)
    script = render("registry-login.sh.j2", registry="registry:5000", user="nodes", stamp="nodes $2b$10$x",
                    docker=None, podman=None, containerd=apply)
    assert password not in script and "their-secret" not in script
    result = subprocess.run(["sh", "-c", script], input=f"{password}\n{runtime_config.toml_string(password)}\n",
                            text=True, capture_output=True, env=containerd_stand_ins(tmp_path, restart_fails))
    calls = (tmp_path / "calls").read_text()
    assert password not in calls
    dumped = tomllib.loads((tmp_path / "dumped").read_text())  # what containerd was asked to check
    configs = dumped["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["configs"]
    assert configs == {"other:443": {"auth": {"username": "them", "password": "their-secret"}},
                       "registry:5000": {"auth": {"username": "nodes", "password": password}}}
    if restart_fails:
        assert result.returncode != 0 and "restored the previous" in result.stderr
        assert config.read_text() == CURRENT_TOML and not (tmp_path / "stamp").exists()
        return
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(config.read_text()) == dumped
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "stamp").read_text() == "nodes $2b$10$x\n"
    assert "systemctl restart containerd" in calls
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("config.toml.")) == \
        ["config.toml.regdeploy-bak"]  # no staged or masked copy left behind


def test_the_containerd_config_is_left_alone_when_a_masked_line_moved(tmp_path):
    """A masked line's number that no longer holds the same key (the file changed since the fact read
    it): nothing is written, nothing restarts."""
    config = tmp_path / "config.toml"
    masked = CURRENT_TOML.replace('"their-secret"', runtime_config.MASKED.format(4))
    config.write_text("# a line added since\n" + CURRENT_TOML)
    plan = runtime_config.plan_containerd_config(masked, 1, "host 'c'", "registry:5000", None)
    script = render("apply-containerd-config.sh.j2", path=str(config), content=plan.content, login=None,
                    stamp="", stamp_path=str(tmp_path / "stamp"), password_on_stdin=runtime_config.PASSWORD_ON_STDIN)
    result = subprocess.run(["sh", "-c", script], text=True, capture_output=True, env=containerd_stand_ins(tmp_path))
    assert result.returncode == 1 and "changed since this deploy read it" in result.stderr
    assert config.read_text() == "# a line added since\n" + CURRENT_TOML
    assert not (tmp_path / "calls").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("config.toml")) == ["config.toml"]


@pytest.mark.parametrize("groups", ["builder docker", "builder users"])
def test_a_local_users_docker_logs_in_as_them_or_the_login_names_what_is_missing(tmp_path, groups):
    """registry_login_local_users: `docker login` run as the user (runuser), into their own ~/.docker,
    the password on stdin only; a user outside the docker group stops the login, named."""
    bin_dir, home = tmp_path / "bin", tmp_path / "home" / "builder"
    bin_dir.mkdir()
    home.mkdir(parents=True)
    stand_ins = {
        "getent": f'#!/bin/sh\n[ "$2" = builder ] && echo "builder:x:1000:1000::{home}:/bin/sh"\n',
        "id": f'#!/bin/sh\necho "{groups}"\n',
        # runuser -u USER -- COMMAND...: recorded, then run (as whoever runs the test).
        "runuser": f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{tmp_path}/runuser.args"\nshift 3\nexec "$@"\n',
        "docker": f'#!/bin/sh\nprintf "%s %s\\n" "$DOCKER_CONFIG" "$*" >> "{tmp_path}/docker.args"\n'
                  f'cat > "{tmp_path}/docker.stdin"\nmkdir -p "$DOCKER_CONFIG"\n',
    }
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    password = "pa ss'$(id)\"x"
    script = render("registry-login.sh.j2", registry="registry:5000", user="robot-a", stamp="robot-a $2b$10$x",
                    docker=None, podman=None, containerd=None, local_users=["builder"],
                    local_stamp=registry_files.LOCAL_LOGIN_STAMP)
    result = subprocess.run(["sh", "-c", script], input=password + "\n", text=True, capture_output=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    if "docker" not in groups.split():
        assert result.returncode != 0 and "builder is not in the docker group" in result.stderr
        assert not (tmp_path / "docker.args").exists()
        return
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "docker.stdin").read_text() == password + "\n"
    docker_args = (tmp_path / "docker.args").read_text()
    assert docker_args == f"{home}/.docker login --username robot-a --password-stdin registry:5000\n"
    assert all(line.startswith("-u builder -- ") for line in (tmp_path / "runuser.args").read_text().splitlines())
    assert (home / registry_files.LOCAL_LOGIN_STAMP).read_text() == "robot-a $2b$10$x\n"


def test_a_local_user_the_host_does_not_have_stops_the_login_named(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "getent").write_text("#!/bin/sh\nexit 2\n")
    (bin_dir / "getent").chmod(0o755)
    script = render("registry-login.sh.j2", registry="registry:5000", user="ci", stamp="ci $2b$10$x",
                    docker=None, podman=None, containerd=None, local_users=["ghost"],
                    local_stamp=registry_files.LOCAL_LOGIN_STAMP)
    result = subprocess.run(["sh", "-c", script], input="pw\n", text=True, capture_output=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode != 0 and "there is no local user ghost on this host" in result.stderr
