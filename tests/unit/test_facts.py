"""The facts' parsers: what a host prints becomes what the deploy decides on."""

import json
import hashlib
import subprocess

import pytest

from regdeploy.facts import DockerHostState, parse_catalog_lines


def test_docker_host_state_parses_every_part_and_keeps_daemon_json_verbatim():
    output = [
        "dpkg=docker.io install ok installed 20.10.24+dfsg1-1+deb12u1+b6", "dpkg=curl deinstall ok config-files 7.88.1-10",
        "ActiveState=active", "UnitFileState=enabled",
        "flag=ExecStart=/usr/sbin/dockerd --insecure-registry old:5000",
        "daemon.json=present", "{", '  "debug": true,', '  "labels": ["a=b"]', "}",
    ]
    state = DockerHostState().process(output)
    assert state["packages"] == {"docker.io": True, "curl": False}
    assert state["dockerd_version"] == "20.10.24+dfsg1-1+deb12u1+b6"
    assert state["active"] and state["enabled"]
    assert state["command_line_registries"] == ["ExecStart=/usr/sbin/dockerd --insecure-registry old:5000"]
    assert state["daemon_json"] == '{\n  "debug": true,\n  "labels": ["a=b"]\n}'


def test_docker_host_state_of_a_fresh_host():
    # dpkg prints nothing for a package it never heard of.
    state = DockerHostState().process(["ActiveState=inactive", "UnitFileState=", "daemon.json=absent"])
    assert state == {"packages": {}, "active": False, "enabled": False,
                     "command_line_registries": [], "trusted": None, "daemon_json": None,
                     "daemon_json_kind": "absent", "daemon_json_detail": "", "lock": None,
                     "dockerd_version": None, "registry": None, "files": {}, "lines": {}, "stamps": {},
                     "versions": {}, "os": {}, "tools": set(), "apparmor": False, "cache": None}


@pytest.mark.parametrize("line,lock", [
    ("lock=held 0", {"held": True, "waited": 0, "holder": ""}),
    ("lock=held 12", {"held": True, "waited": 12, "holder": ""}),
    ("lock=busy 5 regdeploy on ctl (pid 7, started 10:00:00)",
     {"held": False, "waited": 5, "holder": "regdeploy on ctl (pid 7, started 10:00:00)"}),
])
def test_docker_host_state_reports_the_deploy_lock(line, lock):
    assert DockerHostState().process([line, "daemon.json=absent"])["lock"] == lock


@pytest.mark.parametrize("setup,kind,detail,content", [
    ("printf '{}' > daemon.json && chmod 600 daemon.json", "present", "600", "{}"),
    ("printf '{}' > real.json && ln -s real.json daemon.json", "symlink", "real.json", None),
    ("mkdir daemon.json", "other", "directory", None),
    ("mkfifo daemon.json", "other", "fifo", None),
    ("true", "absent", "", None),
])
def test_docker_host_state_tells_what_daemon_json_is(tmp_path, setup, kind, detail, content):
    command = DockerHostState().command(path=str(tmp_path / "daemon.json"))
    result = subprocess.run(["sh", "-c", f"cd {tmp_path} && {setup}\ndocker() {{ return 1; }}\ncurl() {{ return 1; }}\n{command}"],
                            capture_output=True, text=True, check=True, timeout=10)
    state = DockerHostState().process(result.stdout.splitlines())
    assert (state["daemon_json_kind"], state["daemon_json_detail"], state["daemon_json"]) == (kind, detail, content)
    assert state["trusted"] is None  # docker did not answer


def test_docker_host_state_reads_what_the_daemon_trusts():
    state = DockerHostState().process(["ActiveState=active", "trusted=registry:5000 127.0.0.0/8",
                                       "daemon.json=absent"])
    assert state["trusted"] == ["registry:5000", "127.0.0.0/8"]


def test_docker_host_state_command_runs_in_sh_on_a_machine_without_docker(tmp_path):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"debug": true}\n')
    command = DockerHostState().command(path=str(daemon_json), packages=("no-such-package-x",))
    result = subprocess.run(["sh", "-c", f"docker() {{ return 1; }}\n{command}"], capture_output=True, text=True,
                            check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    assert not state["packages"].get("no-such-package-x")
    # Docker's version is the installed package's, as dpkg says it here.
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "docker.io"], capture_output=True, text=True)
    installed = dpkg.stdout.startswith("install ok installed ")
    assert state["dockerd_version"] == (dpkg.stdout.rsplit(" ", 1)[1] if installed else None)
    assert state["daemon_json"] == '{"debug": true}'


def test_the_servers_fact_parses_the_registry_side_too():
    inspect = {"Name": "/registry", "State": {"Running": True}, "Mounts": []}
    registry = ["config=" + "a" * 64, "data_dir=partial", "image=sha256:abc", "holder=registry", "holder=web",
                "aside_left=yes", "storage_entries=1", "storage_repositories=14", "storage_bytes=2048",
                "container-json=" + json.dumps(inspect)]
    output = ["ActiveState=active", *("registry." + line for line in registry), "daemon.json=absent"]
    state = DockerHostState().process(output)["registry"]
    assert state.config_sha256 == "a" * 64 and state.data_dir == "partial" and state.image_id == "sha256:abc"
    assert state.port_holders == ("registry", "web") and state.aside_left
    assert (state.storage_entries, state.storage_repositories, state.storage_bytes) == (1, 14, 2048)
    assert state.container == inspect


@pytest.mark.parametrize("setup,expected", [
    ("", "absent"),
    ("mkdir data", "empty"),
    ("mkdir -p data/lost+found", "empty"),
    ("mkdir -p data/docker", "data"),
    ("mkdir -p data/docker && touch data/.regdeploy-migration-incomplete", "partial"),
])
def test_the_servers_fact_reads_the_registry_data_directory(tmp_path, setup, expected):
    # `docker` and `curl` (Docker's API) answer nothing here (functions shadow them): no image, no
    # container, no holder, whatever this machine's own Docker holds.
    registry = (str(tmp_path / "config.yml"), str(tmp_path / "data"), "registry:2", "registry", 5000)
    command = DockerHostState().command(path=str(tmp_path / "daemon.json"), registry=registry)
    result = subprocess.run(["sh", "-c", f"cd {tmp_path} && {setup or 'true'}\ndocker() {{ return 1; }}\ncurl() {{ return 1; }}\n{command}"],
                            capture_output=True, text=True, check=True)
    host_state = DockerHostState().process(result.stdout.splitlines())
    state = host_state["registry"]
    assert host_state["daemon_json_kind"] == "absent", "the registry's lines must not swallow the host's"
    assert state.data_dir == expected
    assert state.config_sha256 is None and state.image_id is None and state.container is None


def test_catalog_lines():
    lines = ["repository lab/busybox", "repository empty", "tag lab/busybox v1", "tag lab/busybox v2"]
    assert parse_catalog_lines(lines) == {"lab/busybox": ["v1", "v2"], "empty": []}
    assert parse_catalog_lines(["unreachable"]) is None


@pytest.mark.parametrize("stamp,asked", [(True, False), (False, True)])
def test_docker_info_is_asked_only_when_the_file_is_not_the_one_dockerd_was_seen_taking(tmp_path, stamp, asked):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"insecure-registries": ["registry:5000"]}\n')
    if stamp:
        subprocess.run(f"sha256sum < {daemon_json} > {daemon_json}.regdeploy-confirmed", shell=True, check=True)
    command = DockerHostState().command(path=str(daemon_json))
    # A stand-in docker that says what it was asked: the fact must not ask it when the stamp matches.
    result = subprocess.run(["sh", "-c", f"docker() {{ echo registry:5000; }}\n{command}"], capture_output=True,
                            text=True, check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    assert state["trusted"] == (["registry:5000"] if asked else None)


def test_docker_host_state_reads_the_secure_modes_files(tmp_path):
    (tmp_path / "ca.crt").write_text("CA\n")
    (tmp_path / "htpasswd").write_text("ci:$2b$10$abc\nops:$2b$10$def\n")
    (tmp_path / "htpasswd").chmod(0o600)
    (tmp_path / "config.json").write_text('{"auths": {"registry:5000": {"auth": "x"}}}')
    (tmp_path / "config.json").chmod(0o600)
    (tmp_path / "login-stamp").write_text("ci $2b$10$hash\n")
    (tmp_path / "other.json").write_text('{"auths": {}}')
    checks = (("file", "ca", str(tmp_path / "ca.crt")), ("file", "key", str(tmp_path / "absent.key")),
              ("lines", "htpasswd", str(tmp_path / "htpasswd")),
              ("stamp", "login", str(tmp_path / "login-stamp"), str(tmp_path / "config.json"), '"registry:5000"'),
              ("stamp", "gone", str(tmp_path / "login-stamp"), str(tmp_path / "other.json"), '"registry:5000"'))
    command = DockerHostState().command(path=str(tmp_path / "daemon.json"), checks=checks)
    result = subprocess.run(["sh", "-c", f"docker() {{ return 1; }}\n{command}"], capture_output=True, text=True,
                            check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert state["files"] == {"ca": f"{hashlib.sha256(b'CA' + bytes([10])).hexdigest()} 644 {user}",
                              "htpasswd": f"- 600 {user}"}
    assert state["lines"] == {"htpasswd": ["ci:$2b$10$abc", "ops:$2b$10$def"]}
    # A stamp counts only while the credential it stands for is there.
    assert state["stamps"] == {"login": "ci $2b$10$hash 600"}


@pytest.mark.parametrize("running, ports, holders", [
    # The container runs and publishes the port on every address: it is the port's only holder, and
    # `docker ps` is not asked (a docker command costs ~50 ms of the server's CPU on every run).
    ("true", " 0.0.0.0:5000 127.0.0.1:32768 ", ("registry",)),
    ("true", " 127.0.0.1:32768 0.0.0.0:5000 :::5000 ", ("registry",)),
    # Stopped, or published elsewhere: who holds the port is asked.
    ("false", " ", ("web",)),
    ("true", " 127.0.0.1:5000 ", ("web",)),
    ("true", " 10.0.0.0:5000 ", ("web",)),
    ("true", " 0.0.0.0:15000 ", ("web",)),
])
def test_the_servers_fact_asks_for_the_ports_holders_only_when_the_container_does_not_hold_it(
        tmp_path, running, ports, holders):
    inspect = {"Name": "/registry", "State": {"Running": running == "true"}}
    # Stand-ins for Docker's CLI and API, with what each would answer for this server.
    docker = (f"docker() {{ case \"$1 $2\" in\n"
              f"  'container inspect') printf '%s\\n' 'mounted=/registry {tmp_path}/data running={running} ports={ports}'"
              f" '{json.dumps(inspect)}' ;;\n"
              f"  'ps --filter') echo holder=web ;;\n"
              f"  *) return 1 ;;\n"
              f"esac; }}\n"
              f"curl() {{ echo '{{\"Id\":\"sha256:{'e' * 64}\",\"RepoTags\":[\"registry:2\"]}}'; }}\n")
    registry = (str(tmp_path / "config.yml"), str(tmp_path / "data"), "registry:2", "registry", 5000)
    command = DockerHostState().command(path=str(tmp_path / "daemon.json"), registry=registry)
    # The API is asked through its socket only where there is one (this machine's, if any, is never used:
    # `curl` is the stand-in above).
    command = command.replace("[ -S /var/run/docker.sock ]", "true")
    result = subprocess.run(["sh", "-c", f"mkdir -p {tmp_path}/data\n{docker}{command}"],
                            capture_output=True, text=True, check=True)
    state = DockerHostState().process(result.stdout.splitlines())["registry"]
    assert state.port_holders == holders
    assert state.image_id == "sha256:" + "e" * 64
    assert state.container == inspect and state.storage_entries == 0


def test_the_servers_fact_reads_the_image_with_docker_where_curl_is_missing(tmp_path):
    registry = (str(tmp_path / "config.yml"), str(tmp_path / "data"), "registry:2", "registry", 5000)
    command = DockerHostState().command(path=str(tmp_path / "daemon.json"), registry=registry)
    docker = ("docker() { case \"$1 $2\" in\n"
              "  'image inspect') echo sha256:cli ;;\n"
              "  *) return 1 ;;\n"
              "esac; }\n")
    # No curl on this server: `command -v curl` fails, the docker CLI answers.
    result = subprocess.run(["sh", "-c", f"{docker}{command.replace('command -v curl', 'false')}"],
                            capture_output=True, text=True, check=True)
    assert DockerHostState().process(result.stdout.splitlines())["registry"].image_id == "sha256:cli"
