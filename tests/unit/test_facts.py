"""The facts' parsers: what a host prints becomes what the deploy decides on."""

import subprocess

from regdeploy.facts import DockerHostState, RegistryFiles, parse_catalog_lines


def test_docker_host_state_parses_every_part_and_keeps_daemon_json_verbatim():
    output = [
        "package=docker.io installed", "package=curl missing",
        "active=active", "enabled=enabled",
        "flag=ExecStart=/usr/sbin/dockerd --insecure-registry old:5000",
        "daemon.json=present", "{", '  "debug": true,', '  "labels": ["a=b"]', "}",
    ]
    state = DockerHostState().process(output)
    assert state["packages"] == {"docker.io": True, "curl": False}
    assert state["active"] and state["enabled"]
    assert state["command_line_registries"] == ["ExecStart=/usr/sbin/dockerd --insecure-registry old:5000"]
    assert state["daemon_json"] == '{\n  "debug": true,\n  "labels": ["a=b"]\n}'


def test_docker_host_state_of_a_fresh_host():
    state = DockerHostState().process(["package=docker.io missing", "active=inactive", "enabled=",
                                       "daemon.json=absent"])
    assert state == {"packages": {"docker.io": False}, "active": False, "enabled": False,
                     "command_line_registries": [], "daemon_json": None}


def test_docker_host_state_command_runs_in_sh_on_a_machine_without_docker(tmp_path):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"debug": true}\n')
    command = DockerHostState().command(path=str(daemon_json), packages=("no-such-package-x",))
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    assert state["packages"] == {"no-such-package-x": False}
    assert state["daemon_json"] == '{"debug": true}'


def test_registry_files():
    assert RegistryFiles().process(["config=" + "a" * 64, "data_dir=present"]) == {
        "config_sha256": "a" * 64, "data_dir": True}
    assert RegistryFiles.default() == {"config_sha256": None, "data_dir": False}


def test_catalog_lines():
    lines = ["repository lab/busybox", "repository empty", "tag lab/busybox v1", "tag lab/busybox v2"]
    assert parse_catalog_lines(lines) == {"lab/busybox": ["v1", "v2"], "empty": []}
    assert parse_catalog_lines(["unreachable"]) is None
