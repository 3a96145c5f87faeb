"""Templates render to what the hosts need: valid YAML, shell scripts that parse, values quoted."""

import shlex
import subprocess

import pytest
import yaml

from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT
from regdeploy.daemon_config import render as render_json
from regdeploy.rendering import render
from regdeploy.settings import validate_hosts
from tasks.registry_server import container_spec_hash


def _sh_syntax_ok(script: str) -> None:
    # dash is /bin/sh on Debian and Ubuntu, where pyinfra runs these scripts.
    result = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True)
    assert result.returncode == 0, result.stderr


def test_registry_config_serves_storage_from_the_mounted_directory():
    config = yaml.safe_load(render("registry-config.yml.j2", data_dir="/srv/registry"))
    assert config["storage"]["filesystem"]["rootdirectory"] == "/var/lib/registry"
    assert config["http"]["addr"] == ":5000"


@pytest.mark.parametrize("action", ["reload", "restart"])
def test_apply_script_parses_and_uses_the_right_systemctl_verb(action):
    script = render("apply-daemon-json.sh.j2", path="/etc/docker/daemon.json", action=action,
                    registry="registry:5000", content=render_json({"insecure-registries": ["registry:5000"]}),
                    insecure_registries_format=INSECURE_REGISTRIES_FORMAT)
    _sh_syntax_ok(script)
    assert f"systemctl {action} docker ||" in script
    assert ("systemctl restart docker ||" in script) == (action == "restart")
    assert shlex.quote(INSECURE_REGISTRIES_FORMAT) in script


def test_shell_values_are_quoted():
    script = render("apply-daemon-json.sh.j2", path="/etc/docker/my daemon.json", action="reload",
                    registry="r:5000", content="{}\n",
                    insecure_registries_format=INSECURE_REGISTRIES_FORMAT)
    assert "current='/etc/docker/my daemon.json'" in script
    _sh_syntax_ok(script)


def test_apply_script_stages_the_json_byte_for_byte(tmp_path):
    content = render_json({"log-opts": {"max-size": "10m"}, "labels": ["a=$HOME", "b=`x`"],
                           "insecure-registries": ["registry:5000"]})
    script = render("apply-daemon-json.sh.j2", path=str(tmp_path / "daemon.json"), action="reload",
                    registry="registry:5000", content=content,
                    insecure_registries_format=INSECURE_REGISTRIES_FORMAT)
    # Run just the staging part (up to the swap) against a temporary directory.
    staging = script.split("if dockerd --help")[0]
    subprocess.run(["sh", "-c", staging], check=True)
    assert (tmp_path / "daemon.json.regdeploy-new").read_text() == content


def test_wait_and_load_scripts_parse():
    _sh_syntax_ok(render("wait-for-registry.sh.j2", port=5000, timeout=60, container="registry"))
    _sh_syntax_ok(render("load-image-archive.sh.j2", archive="/var/cache/regdeploy/r.tar",
                         sha256="0" * 64, image="registry:2"))


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
