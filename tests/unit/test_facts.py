"""The facts' parsers: what a host prints becomes what the deploy decides on."""

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from regdeploy import runtime_config
from regdeploy.facts import DockerHostState, parse_catalog_lines
from regdeploy.host_state import HostState, Lock


def host_state_command(tmp_path, **kwargs) -> str:
    """The fact's command, keeping dpkg-query's answer under tmp_path instead of this machine's /var/cache."""
    return DockerHostState().command(dpkg_cache=str(tmp_path / "cache" / "dpkg-query"), **kwargs)


def test_docker_host_state_parses_every_part_and_keeps_daemon_json_verbatim():
    output = [
        "dpkg=docker.io install ok installed 20.10.24+dfsg1-1+deb12u1+b6", "dpkg=curl deinstall ok config-files 7.88.1-10",
        "ActiveState=active", "UnitFileState=enabled",
        "flag=ExecStart=/usr/sbin/dockerd --insecure-registry old:5000",
        "daemon.json=present", "{", '  "debug": true,', '  "labels": ["a=b"]', "}",
    ]
    state = DockerHostState().process(output)
    assert state.packages == {"docker.io": True, "curl": False}
    assert state.dockerd_version == "20.10.24+dfsg1-1+deb12u1+b6"
    assert state.active and state.enabled
    assert state.command_line_registries == ["ExecStart=/usr/sbin/dockerd --insecure-registry old:5000"]
    assert state.daemon_json == '{\n  "debug": true,\n  "labels": ["a=b"]\n}'


def test_docker_host_state_of_a_fresh_host():
    # dpkg prints nothing for a package it never heard of.
    state = DockerHostState().process(["ActiveState=inactive", "UnitFileState=", "daemon.json=absent"])
    assert state == HostState()
    assert (state.packages, state.active, state.enabled, state.daemon_json_kind, state.lock) == (
        {}, False, False, "absent", None)


@pytest.mark.parametrize("line,lock", [
    ("lock=held 0", Lock(held=True, waited=0, holder="")),
    ("lock=held 12", Lock(held=True, waited=12, holder="")),
    ("lock=busy 5 regdeploy on ctl (pid 7, started 10:00:00)",
     Lock(held=False, waited=5, holder="regdeploy on ctl (pid 7, started 10:00:00)")),
])
def test_docker_host_state_reports_the_deploy_lock(line, lock):
    assert DockerHostState().process([line, "daemon.json=absent"]).lock == lock


@pytest.mark.parametrize("setup,kind,detail,content", [
    ("printf '{}' > daemon.json && chmod 600 daemon.json", "present", "600", "{}"),
    ("printf '{}' > real.json && ln -s real.json daemon.json", "symlink", "real.json", None),
    ("mkdir daemon.json", "other", "directory", None),
    ("mkfifo daemon.json", "other", "fifo", None),
    ("true", "absent", "", None),
])
def test_docker_host_state_tells_what_daemon_json_is(tmp_path, setup, kind, detail, content):
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"))
    result = subprocess.run(["sh", "-c", f"cd {tmp_path} && {setup}\ndocker() {{ return 1; }}\ncurl() {{ return 1; }}\n{command}"],
                            capture_output=True, text=True, check=True, timeout=10)
    state = DockerHostState().process(result.stdout.splitlines())
    assert (state.daemon_json_kind, state.daemon_json_detail, state.daemon_json) == (kind, detail, content)
    assert state.trusted is None  # docker did not answer


def test_docker_host_state_reads_what_the_daemon_trusts():
    state = DockerHostState().process(["ActiveState=active", "trusted=registry:5000 127.0.0.0/8",
                                       "daemon.json=absent"])
    assert state.trusted == ["registry:5000", "127.0.0.0/8"]


def test_docker_host_state_command_runs_in_sh_on_a_machine_without_docker(tmp_path):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"debug": true}\n')
    command = host_state_command(tmp_path, path=str(daemon_json), packages=("no-such-package-x",))
    result = subprocess.run(["sh", "-c", f"docker() {{ return 1; }}\n{command}"], capture_output=True, text=True,
                            check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    assert not state.packages.get("no-such-package-x")
    # Docker's version is the installed package's, as dpkg says it here.
    dpkg = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "docker.io"], capture_output=True, text=True)
    installed = dpkg.stdout.startswith("install ok installed ")
    assert state.dockerd_version == (dpkg.stdout.rsplit(" ", 1)[1] if installed else None)
    assert state.daemon_json == '{"debug": true}'


def test_the_servers_fact_parses_the_registry_side_too():
    inspect = {"Name": "/registry", "State": {"Running": True}, "Mounts": []}
    registry = ["config=" + "a" * 64, "data_dir=partial", "image=sha256:abc", "holder=registry", "holder=web",
                "aside_left=yes", "storage_entries=1", "storage_repositories=14", "storage_bytes=2048",
                "container-json=" + json.dumps(inspect)]
    output = ["ActiveState=active", *("registry." + line for line in registry), "daemon.json=absent"]
    state = DockerHostState().process(output).registry
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
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"), registry=registry)
    result = subprocess.run(["sh", "-c", f"cd {tmp_path} && {setup or 'true'}\ndocker() {{ return 1; }}\ncurl() {{ return 1; }}\n{command}"],
                            capture_output=True, text=True, check=True)
    host_state = DockerHostState().process(result.stdout.splitlines())
    state = host_state.registry
    assert host_state.daemon_json_kind == "absent", "the registry's lines must not swallow the host's"
    assert state.data_dir == expected
    assert state.config_sha256 is None and state.image_id is None and state.container is None


def test_catalog_lines():
    lines = ["repository lab/busybox", "repository empty", "tag lab/busybox v1", "tag lab/busybox v2"]
    assert parse_catalog_lines(lines) == {"lab/busybox": ["v1", "v2"], "empty": []}
    assert parse_catalog_lines(["unreachable"]) is None


def counting(tmp_path, *commands) -> str:
    """Shell functions that log each call of `commands` to tmp_path/calls, then run the real command."""
    return "".join(f'{c}() {{ echo {c} >> {tmp_path}/calls; command {c} "$@"; }}\n' for c in commands)


def calls(tmp_path) -> list[str]:
    log = tmp_path / "calls"
    return log.read_text().split() if log.exists() else []


@pytest.mark.parametrize("stamp,later_ns,asked,hashed", [
    # As the apply script writes it: the file's hash, with the file's mtime. Nothing is run.
    ("sha256sum < {f} > {f}.regdeploy-confirmed && touch -r {f} {f}.regdeploy-confirmed", 0, False, 0),
    # As regdeploy wrote it before the mtime (or the file touched since): hashed, found equal.
    ("sha256sum < {f} > {f}.regdeploy-confirmed", 0, False, 1),
    # The file changed after dockerd took it: another hash, another mtime...
    ("sha256sum < {f} > {f}.regdeploy-confirmed && touch -d '2020-01-01' {f}.regdeploy-confirmed "
     "&& echo '{{}}' > {f}", 0, True, 1),
    # ... even if only a microsecond later.
    ("sha256sum < {f} > {f}.regdeploy-confirmed && touch -r {f} {f}.regdeploy-confirmed "
     "&& echo '{{}}' > {f}", 1000, True, 1),
    ("true", 0, True, 0),
])
def test_docker_info_is_asked_only_when_the_file_is_not_the_one_dockerd_was_seen_taking(
        tmp_path, stamp, later_ns, asked, hashed):
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"insecure-registries": ["registry:5000"]}\n')
    subprocess.run(stamp.format(f=daemon_json), shell=True, check=True)
    if later_ns:  # the clock may not have moved between the touch and the write
        confirmed = Path(f"{daemon_json}.regdeploy-confirmed").stat().st_mtime_ns
        os.utime(daemon_json, ns=(confirmed + later_ns, confirmed + later_ns))
    command = host_state_command(tmp_path, path=str(daemon_json))

    def run() -> dict:
        # A stand-in docker that says what it was asked: the fact must not ask it when the stamp matches.
        result = subprocess.run(["sh", "-c", f"docker() {{ echo registry:5000; }}\n"
                                             f"{counting(tmp_path, 'sha256sum')}{command}"],
                                capture_output=True, text=True, check=True)
        return DockerHostState().process(result.stdout.splitlines())

    assert run().trusted == (["registry:5000"] if asked else None)
    assert calls(tmp_path).count("sha256sum") == hashed
    # A stamp found by its hash is given the file's mtime: the next run hashes nothing.
    if not asked:
        assert run().trusted is None and calls(tmp_path).count("sha256sum") == hashed


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
    (tmp_path / "a (b) = c.crt").write_text("other\n")  # sha256sum --tag prints "SHA256 (NAME) = HASH"
    checks += (("file", "odd", str(tmp_path / "a (b) = c.crt")),)
    (tmp_path / "trailing space ").write_text("other\n")  # the mode and owner's line must keep it
    checks += (("file", "spaced", str(tmp_path / "trailing space ")),)
    (tmp_path / "daemon.json").write_text("{}\n")
    (tmp_path / "daemon.json").chmod(0o640)
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"), checks=checks)
    result = subprocess.run(["sh", "-c", f"docker() {{ return 1; }}\n{counting(tmp_path, 'find', 'sha256sum')}{command}"],
                            capture_output=True, text=True, check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    assert state.files == {"ca": f"{hashlib.sha256(b'CA' + bytes([10])).hexdigest()} 644 {user}",
                              "odd": f"{hashlib.sha256(b'other' + bytes([10])).hexdigest()} 644 {user}",
                              "spaced": f"{hashlib.sha256(b'other' + bytes([10])).hexdigest()} 644 {user}",
                              "htpasswd": f"- 600 {user}"}
    assert state.lines == {"htpasswd": ["ci:$2b$10$abc", "ops:$2b$10$def"]}
    # A stamp counts only while the credential it stands for is there.
    assert state.stamps == {"login": "ci $2b$10$hash 600"}
    assert (state.daemon_json_kind, state.daemon_json_detail) == ("present", "640")
    # However many files: one find and one sha256sum (a process per file adds up over a fleet).
    assert sorted(calls(tmp_path)) == ["find", "sha256sum"]


def test_a_file_gone_between_the_facts_test_and_its_stat_is_absent():
    # The shell saw each file, then stat (or sha256sum) did not find it: neither is reported.
    output = ["path.ca=file /etc/ca.crt", "SHA256 (/etc/ca.crt) = " + "a" * 64,
              "path.key=file /etc/key.pem", "stat=600 root /etc/key.pem",
              "path.htpasswd=lines /etc/htpasswd", "stamp.login=ci $2b$10$hash", "path.login=stamp /root/c.json",
              "path.daemon.json=present /etc/docker/daemon.json", "daemon.json=present", "{}"]
    state = DockerHostState().process(output)
    assert state.files == {} and state.stamps == {}
    assert (state.daemon_json_kind, state.daemon_json_detail, state.daemon_json) == ("present", "", "{}")


def go_json(value) -> str:
    """JSON as Docker writes it: compact, one line, and <, >, & escaped (Go's HTML-safe encoding)."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def container(name, running=True, ports=(("0.0.0.0", "5000"),), storage=None, labels=None) -> dict:
    """A container as `docker container inspect` (and Docker's API) describes it, in its field order."""
    mounts = [{"Type": "bind", "Source": storage, "Destination": "/var/lib/registry", "Mode": "", "RW": True,
               "Propagation": "rprivate"}] if storage else []
    return {"Id": "f" * 64, "Name": f"/{name}", "State": {"Running": running}, "Mounts": mounts,
            "Config": {"Labels": labels or {}},
            "NetworkSettings": {"Ports": {"5000/tcp": [{"HostIp": ip, "HostPort": port} for ip, port in ports]}}}


@pytest.fixture(params=["api", "cli"])
def stand_in_docker(request, tmp_path):
    """Run the server's fact against stand-ins for Docker: its API through curl (where curl and the socket
    are there) or its CLI (where they are not), both answering from the same containers. This machine's
    own Docker is never asked. Every call checks the image's id, read through either. Returns
    run(containers) -> the registry's ServerState."""
    path = request.param

    def run(containers, data_exists=True):
        api = tmp_path / "api"
        shutil.rmtree(api, ignore_errors=True)  # what an earlier call of this test made
        (api / "images" / "registry:2").mkdir(parents=True, exist_ok=True)
        (api / "images" / "registry:2" / "json").write_text(go_json({"Id": "sha256:" + "e" * 64}) + "\n")
        cli = []
        for c in containers:
            name = c["Name"].lstrip("/")
            (api / "containers" / name).mkdir(parents=True, exist_ok=True)
            (api / "containers" / name / "json").write_text(go_json(c) + "\n")
            storage = "".join(m["Source"] for m in c["Mounts"] if m["Destination"] == "/var/lib/registry")
            ports = "".join(f" {b['HostIp']}:{b['HostPort']}" for b in c["NetworkSettings"]["Ports"]["5000/tcp"])
            cli += [f"mounted=/{name} {storage} running={str(c['State']['Running']).lower()} ports={ports} ",
                    go_json(c)]
        (tmp_path / "cli-inspect").write_text("\n".join(cli) + "\n")
        stand_ins = (
            "curl() {\n"
            "    w=\n"
            "    while [ $# -gt 0 ]; do\n"
            "        case \"$1\" in\n"
            "            -s) shift ;;\n"
            "            --unix-socket) shift 2 ;;\n"
            "            -w) w=$2; shift 2 ;;\n"
            f"            *) cat \"{api}${{1#http://docker}}\" 2>/dev/null || echo '{{\"message\":\"No such container\"}}'\n"
            "               printf \"$w\"; shift ;;\n"
            "        esac\n"
            "    done\n"
            "}\n"
            "docker() { case \"$1 $2\" in\n"
            f"    'container inspect') cat {tmp_path}/cli-inspect ;;\n"
            f"    'image inspect') echo sha256:{'e' * 64} ;;\n"
            "    'ps --filter') echo holder=web ;;\n"
            "    *) return 1 ;;\n"
            "esac; }\n")
        registry = (str(tmp_path / "config.yml"), str(tmp_path / "data"), "registry:2", "registry", 5000)
        command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"), registry=registry,
                                     cache_name="registry-cache")
        command = command.replace("[ -S /var/run/docker.sock ]", "true") if path == "api" \
            else command.replace("command -v curl", "false")
        setup = f"mkdir -p {tmp_path}/data\n" if data_exists else ""
        result = subprocess.run(["sh", "-c", f"{setup}{stand_ins}{command}"], capture_output=True, text=True,
                                check=True)
        state = DockerHostState().process(result.stdout.splitlines()).registry
        assert state.image_id == "sha256:" + "e" * 64
        return state

    return run


@pytest.mark.parametrize("running, ports, holders", [
    # The container runs and publishes the port on every address: it is the port's only holder, and
    # `docker ps` is not asked (a docker command costs ~50 ms of the server's CPU on every run).
    (True, [("0.0.0.0", "5000"), ("127.0.0.1", "32768")], ("registry",)),
    (True, [("127.0.0.1", "32768"), ("0.0.0.0", "5000"), ("::", "5000")], ("registry",)),
    # Stopped, or published elsewhere: who holds the port is asked.
    (False, [("0.0.0.0", "5000")], ("web",)),
    (True, [("127.0.0.1", "5000")], ("web",)),
    (True, [("10.0.0.0", "5000")], ("web",)),
    (True, [("0.0.0.0", "15000")], ("web",)),
])
def test_the_servers_fact_asks_for_the_ports_holders_only_when_the_container_does_not_hold_it(
        tmp_path, stand_in_docker, running, ports, holders):
    registry = container("registry", running=running, ports=ports, storage=str(tmp_path / "data"))
    state = stand_in_docker([registry])
    assert state.port_holders == holders
    assert state.container == registry and state.storage_entries == 0 and not state.storage_unread
    assert not state.aside_left and not state.cache_left


def test_the_servers_fact_measures_storage_elsewhere_than_the_data_directory(tmp_path, stand_in_docker):
    # A registry started by hand, its data in a directory with a space in its name.
    elsewhere = tmp_path / "old data"
    (elsewhere / "docker" / "registry" / "v2" / "repositories" / "lab" / "busybox" / "_manifests").mkdir(parents=True)
    (elsewhere / "lost+found").mkdir()
    state = stand_in_docker([container("registry", storage=str(elsewhere))])
    assert (state.storage_entries, state.storage_repositories) == (1, 1) and state.storage_bytes > 0
    assert not state.storage_unread


def test_a_storage_path_docker_escapes_is_never_taken_as_measured(tmp_path, stand_in_docker, request):
    # Go writes "&" as \u0026: a shell cutting the path from the JSON measures another path, and the
    # controller says so instead of trusting "nothing there".
    elsewhere = tmp_path / "a&b"
    (elsewhere / "docker").mkdir(parents=True)
    state = stand_in_docker([container("registry", storage=str(elsewhere))])
    if request.node.callspec.params["stand_in_docker"] == "api":
        assert state.storage_unread == str(elsewhere) and state.storage_entries == 0
    else:  # Docker's CLI prints the path itself
        assert not state.storage_unread and state.storage_entries == 1


def test_the_servers_fact_sees_the_aside_container_and_an_earlier_cache(tmp_path, stand_in_docker):
    containers = [container("registry", storage=str(tmp_path / "data")),
                  container("registry.regdeploy-old", running=False, storage=str(tmp_path / "data")),
                  container("registry-cache", labels={"regdeploy.spec-sha256": "0" * 64})]
    state = stand_in_docker(containers)
    assert state.aside_left and state.cache_left and state.container == containers[0]
    # A container of that name that regdeploy did not make is not its cache.
    assert not stand_in_docker([containers[0], container("registry-cache")]).cache_left
    assert stand_in_docker([]).container is None


@pytest.fixture
def fake_dpkg(tmp_path):
    """A dpkg database (its status file's mtime is all the cache looks at) and a stand-in dpkg-query
    that logs each call and answers like dpkg's: exit 1 for a package it never heard of."""
    (tmp_path / "dpkg" / "updates").mkdir(parents=True)
    (tmp_path / "dpkg" / "status").write_text("Package: docker.io\n")
    (tmp_path / "bin").mkdir()
    query = tmp_path / "bin" / "dpkg-query"
    query.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> {tmp_path}/queries\n"
                     "cat \"$(dirname \"$0\")/answer\"\nexit 1\n")
    query.chmod(0o755)
    (tmp_path / "bin" / "answer").write_text("dpkg=docker.io install ok installed 20.10.24\n")

    def run(packages=("docker.io",)) -> dict:
        command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"), packages=packages)
        command = command.replace("dpkg_status=/var/lib/dpkg/status", f"dpkg_status={tmp_path}/dpkg/status")
        result = subprocess.run(["sh", "-c", f"docker() {{ return 1; }}\n{command}"], capture_output=True, text=True,
                                check=True, env={"PATH": f"{tmp_path}/bin:/usr/bin:/bin"})
        return DockerHostState().process(result.stdout.splitlines())

    def queries() -> int:
        log = tmp_path / "queries"
        return len(log.read_text().splitlines()) if log.exists() else 0

    run.queries = queries
    return run


def test_dpkg_is_asked_once_while_its_database_does_not_change(tmp_path, fake_dpkg):
    first = fake_dpkg()
    assert fake_dpkg.queries() == 1 and first.versions == {"docker.io": "20.10.24"}
    # The same answer, from the cache: dpkg-query is not run again.
    assert fake_dpkg() == first and fake_dpkg.queries() == 1


@pytest.mark.parametrize("change", [
    # dpkg changed its database: a package installed, removed or upgraded.
    "touch status",
    # Even to an older mtime (a restored backup): only the same mtime counts.
    "touch -d 2001-01-01 status",
    # A dpkg run half-way: its journal in updates/ is not in the status file yet.
    "touch updates/0001",
])
def test_dpkg_is_asked_again_when_its_database_changes(tmp_path, fake_dpkg, change):
    fake_dpkg()
    (tmp_path / "bin" / "answer").write_text("dpkg=docker.io install ok installed 26.1.5\n")
    subprocess.run(f"cd {tmp_path}/dpkg && sleep 0.01 && {change}", shell=True, check=True)
    assert fake_dpkg().versions == {"docker.io": "26.1.5"} and fake_dpkg.queries() == 2


def test_dpkg_is_asked_again_for_other_packages(tmp_path, fake_dpkg):
    fake_dpkg(("docker.io",))
    fake_dpkg(("docker.io", "apparmor"))
    assert fake_dpkg.queries() == 2
    assert "apparmor" in (tmp_path / "queries").read_text().splitlines()[-1]


def test_dpkg_is_asked_every_time_where_its_answer_cannot_be_kept(tmp_path, fake_dpkg):
    # A login that may not write the cache's directory (no root, no sudo): the answer is still right.
    (tmp_path / "cache").write_text("a file where the directory would be")
    assert fake_dpkg().versions == {"docker.io": "20.10.24"}
    assert fake_dpkg().versions == {"docker.io": "20.10.24"}
    assert fake_dpkg.queries() == 2


def dockerd_files_in(tmp_path, command: str) -> str:
    """The fact's command reading dockerd's pid file, /etc/default/docker and unit directories under
    tmp_path (docker.pid, default, units): this machine's own Docker, systemd and /etc stay out of it."""
    return (command.replace("/var/run/docker.pid", str(tmp_path / "docker.pid"))
            .replace("/etc/default/docker", str(tmp_path / "default"))
            .replace("/etc/systemd/system /run/systemd/system /usr/local/lib/systemd/system /usr/lib/systemd/system \\\n"
                     "        /lib/systemd/system", str(tmp_path / "units")))


@pytest.mark.parametrize("files, effective, flags", [
    # Nothing names the flag: systemd is not asked for the unit's ExecStart (the stand-in would say it).
    ({}, "/usr/sbin/dockerd --insecure-registry stale:5000", []),
    # A drop-in adds it (a daemon-reload made it effective): reported as systemd has it.
    ({"units/docker.service.d/flag.conf": "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --insecure-registry old:5000\n"},
     "/usr/sbin/dockerd --insecure-registry old:5000",
     ["ExecStart={ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd --insecure-registry old:5000 ; }"]),
    # The unit's file has it, but a drop-in replaced that ExecStart: nothing dockerd gets.
    ({"units/docker.service": "[Service]\nExecStart=/usr/sbin/dockerd --insecure-registry old:5000\n",
      "units/docker.service.d/plain.conf": "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd -H fd://\n"},
     "/usr/sbin/dockerd -H fd://", []),
    # /etc/default/docker's DOCKER_OPTS (a comment does not count).
    ({"default": "#DOCKER_OPTS=\"--insecure-registry commented:5000\"\nDOCKER_OPTS=\"--insecure-registry old:5000\"\n"},
     "/usr/sbin/dockerd -H fd:// $DOCKER_OPTS", ['default:DOCKER_OPTS="--insecure-registry old:5000"']),
])
def test_insecure_registry_flags_are_what_dockerd_gets(tmp_path, files, effective, flags):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"))
    # This machine's own Docker, systemd and /etc stay out of it: no dockerd runs, the unit lives in
    # tmp_path/units, and a stand-in systemctl answers for the unit and logs each question.
    command = dockerd_files_in(tmp_path, command)
    stand_ins = ("pidof() { return 1; }\n"
                 f"systemctl() {{ echo \"$*\" >> {tmp_path}/asked; "
                 f"echo 'ExecStart={{ path=/usr/sbin/dockerd ; argv[]={effective} ; }}'; }}\n"
                 "docker() { return 1; }\n")
    result = subprocess.run(["sh", "-c", stand_ins + command], capture_output=True, text=True, check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    assert [flag.replace(str(tmp_path) + "/", "") for flag in state.command_line_registries] == flags
    # systemd is asked once: no dockerd runs here, so the service's state is asked for, and that answer
    # carries the effective ExecStart (a running dockerd under an enabled unit is asked nothing, unless
    # a file names the flag: then for ExecStart alone).
    assert (tmp_path / "asked").read_text().splitlines() == ["show docker --property=ActiveState,UnitFileState,ExecStart"]


@pytest.fixture
def flags_fact(tmp_path):
    """The fact with dockerd's unit files in tmp_path/units and /etc/default/docker at tmp_path/default,
    stand-ins for pidof (tmp_path/pids) and systemctl (the effective ExecStart in tmp_path/effective),
    and a grep that logs each call: run() returns (flags reported, whether grep ran)."""
    (tmp_path / "units" / "docker.service.d").mkdir(parents=True)
    (tmp_path / "units" / "docker.service").write_text("[Service]\nExecStart=/usr/sbin/dockerd -H fd://\n")
    (tmp_path / "default").write_text("#DOCKER_OPTS=\n")
    (tmp_path / "pids").write_text("4242\n")
    (tmp_path / "effective").write_text("/usr/sbin/dockerd -H fd://")
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"))
    command = dockerd_files_in(tmp_path, command)
    stand_ins = (f"pidof() {{ cat {tmp_path}/pids; }}\n"
                 f"systemctl() {{ echo \"ExecStart={{ path=/usr/sbin/dockerd ; argv[]=$(cat {tmp_path}/effective) ; }}\"; }}\n"
                 "docker() { return 1; }\n" + counting(tmp_path, "grep"))

    def run() -> tuple[list[str], bool]:
        before = calls(tmp_path).count("grep")
        result = subprocess.run(["sh", "-c", stand_ins + command], capture_output=True, text=True, check=True)
        state = DockerHostState().process(result.stdout.splitlines())
        return ([flag.replace(str(tmp_path) + "/", "") for flag in state.command_line_registries],
                calls(tmp_path).count("grep") > before)

    return run


def next_second() -> None:
    """Wait for the clock's next second: what changed before it is older than what a run writes after."""
    time.sleep(1.01 - time.time() % 1)


def converged(flags_fact) -> None:
    """The files are older than the grep's round: the first run greps, the next does not."""
    next_second()
    assert flags_fact() == ([], True)
    assert flags_fact() == ([], False)


def add_flag_keeping_the_mtime(tmp_path):
    # cp -p, tar or a package put the file back with an old mtime: its ctime still moves.
    unit = tmp_path / "units" / "docker.service"
    old = unit.stat()
    unit.write_text("[Service]\nExecStart=/usr/sbin/dockerd -H fd:// --insecure-registry old:5000\n")
    os.utime(unit, ns=(old.st_atime_ns, old.st_mtime_ns))
    (tmp_path / "effective").write_text("/usr/sbin/dockerd -H fd:// --insecure-registry old:5000")  # daemon-reload
    return ["ExecStart={ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd -H fd:// --insecure-registry old:5000 ; }"]


def add_drop_in(tmp_path):
    (tmp_path / "units" / "docker.service.d" / "flag.conf").write_text(
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --insecure-registry old:5000\n")
    (tmp_path / "effective").write_text("/usr/sbin/dockerd --insecure-registry old:5000")
    return ["ExecStart={ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd --insecure-registry old:5000 ; }"]


def add_docker_opts(tmp_path):
    with open(tmp_path / "default", "a") as default:
        default.write('DOCKER_OPTS="--insecure-registry old:5000"\n')
    return ['default:DOCKER_OPTS="--insecure-registry old:5000"']


def restart_dockerd(tmp_path):
    # Started by hand with the flag: a new pid, whose command line grep reads (here: nothing found).
    (tmp_path / "pids").write_text("4343\n")
    return []


def interrupt_the_grep(tmp_path):
    # A run wrote its round, then died before its grep finished: what it had not seen is not trusted.
    (tmp_path / "cache" / "insecure-registry-flags-round").write_text("")
    return []


@pytest.mark.parametrize("change", [add_flag_keeping_the_mtime, add_drop_in, add_docker_opts, restart_dockerd,
                                    interrupt_the_grep])
def test_the_flags_grep_runs_again_once_anything_it_reads_may_have_changed(tmp_path, flags_fact, change):
    converged(flags_fact)
    flags = change(tmp_path)
    assert flags_fact() == (flags, True)
    # Found: asked again on every run until it is gone. Nothing found (no file changed): trusted again.
    assert flags_fact() == (flags, bool(flags))


def test_a_linked_unit_is_grepped_on_every_run(tmp_path, flags_fact):
    # A unit linked in from elsewhere (systemctl link): its target's changes do not move the link's ctime.
    unit = tmp_path / "units" / "docker.service"
    (tmp_path / "elsewhere.service").write_text(unit.read_text())
    unit.unlink()
    unit.symlink_to(tmp_path / "elsewhere.service")
    next_second()
    assert flags_fact() == ([], True)
    assert flags_fact() == ([], True)
    (tmp_path / "elsewhere.service").write_text("[Service]\nExecStart=/usr/sbin/dockerd --insecure-registry old:5000\n")
    (tmp_path / "effective").write_text("/usr/sbin/dockerd --insecure-registry old:5000")
    assert flags_fact() == (
        ["ExecStart={ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd --insecure-registry old:5000 ; }"], True)


def test_a_change_in_the_second_of_the_grep_is_not_trusted(tmp_path, flags_fact):
    # The grep's round and a change in the same second: the next run cannot tell which came first.
    next_second()
    assert flags_fact() == ([], True)
    (tmp_path / "units" / "docker.service.d" / "plain.conf").write_text("[Service]\nLimitNOFILE=1024\n")
    assert flags_fact() == ([], True)


def test_the_flags_grep_runs_every_time_where_its_answer_cannot_be_kept(tmp_path, flags_fact):
    (tmp_path / "cache").write_text("a file where the directory would be")
    next_second()
    assert flags_fact() == ([], True)
    assert flags_fact() == ([], True)


@pytest.mark.parametrize("content", [
    '{\n\t"insecure-registries": ["registry:5000"],  \n  "debug": true\n}\n',
    '{"debug": true}',  # no final newline
    "",
    "\n\n",
    '{"labels": ["a\x1fb"]}\n',  # a unit separator: sent line by line
])
def test_daemon_json_and_a_lines_checks_file_come_back_verbatim_on_one_line(tmp_path, content):
    (tmp_path / "daemon.json").write_text(content)
    (tmp_path / "config.toml").write_text(content)
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"),
                                 checks=(("lines", "config", str(tmp_path / "config.toml")),))
    result = subprocess.run(["sh", "-c", f"docker() {{ return 1; }}\n{command}"], capture_output=True, text=True,
                            check=True)
    state = DockerHostState().process(result.stdout.splitlines())
    assert state.daemon_json == content.removesuffix("\n")
    assert state.lines.get("config", []) == content.splitlines()
    # Each file costs one line of output (pyinfra reads output a line at a time), unless it holds a separator.
    lines = result.stdout.splitlines()
    content_lines = len(content.splitlines())
    if "\x1f" in content:
        assert lines[-content_lines:] == content.splitlines()
    else:
        assert lines[-1] == "daemon.json=present"
        assert sum(line.startswith(("lines.config=", "daemon.json.joined=")) for line in lines) == 2


@pytest.mark.parametrize("flag", [False, True])
def test_without_caches_the_fact_gives_the_same_answers_and_keeps_nothing(tmp_path, flag):
    """host_caches=false: dpkg is asked and dockerd's files searched on every run, nothing is kept,
    and the host's state reads the same as through the caches, first run and cached run alike."""
    (tmp_path / "dpkg" / "updates").mkdir(parents=True)
    (tmp_path / "dpkg" / "status").write_text("Package: docker.io\n")
    (tmp_path / "bin").mkdir()
    query = tmp_path / "bin" / "dpkg-query"
    query.write_text("#!/bin/sh\necho dpkg-query >> \"$CALLS\"\n"
                     "echo 'dpkg=docker.io install ok installed 26.1.5+dfsg1-9+b6'\nexit 1\n")
    query.chmod(0o755)
    (tmp_path / "units" / "docker.service.d").mkdir(parents=True)
    (tmp_path / "units" / "docker.service").write_text("[Service]\nExecStart=/usr/sbin/dockerd -H fd://\n")
    if flag:
        (tmp_path / "default").write_text('DOCKER_OPTS="--insecure-registry old:5000"\n')
    stand_ins = ("pidof() { echo 4242; }\n"
                 "systemctl() { echo 'ExecStart={ path=/usr/sbin/dockerd ; argv[]=/usr/sbin/dockerd -H fd:// ; }'; }\n"
                 "docker() { return 1; }\n" + counting(tmp_path, "grep"))

    def run(cache: str):
        command = DockerHostState().command(path=str(tmp_path / "daemon.json"), packages=("docker.io",),
                                            dpkg_cache=cache)
        command = dockerd_files_in(tmp_path, command).replace("dpkg_status=/var/lib/dpkg/status",
                                                              f"dpkg_status={tmp_path}/dpkg/status")
        before = len(calls(tmp_path))
        result = subprocess.run(["sh", "-c", stand_ins + command], capture_output=True, text=True, check=True,
                                env={"PATH": f"{tmp_path}/bin:/usr/bin:/bin", "CALLS": str(tmp_path / "calls")})
        return DockerHostState().process(result.stdout.splitlines()), calls(tmp_path)[before:]

    cache = tmp_path / "cache" / "dpkg-query"
    next_second()  # the unit files are older than the first grep's round: the second run may skip it
    first, asked_first = run(str(cache))
    cached, asked_cached = run(str(cache))
    plain, asked_plain = run("")
    plain_again, asked_again = run("")
    assert first == cached == plain == plain_again
    assert first.versions == {"docker.io": "26.1.5+dfsg1-9+b6"}
    assert bool(first.command_line_registries) == flag
    # Through the caches the second run asks dpkg nothing (and greps nothing, when nothing was found);
    # without them every run asks and greps, and nothing new is kept.
    assert asked_first.count("dpkg-query") == 1 and asked_cached.count("dpkg-query") == 0
    assert asked_cached.count("grep") == (2 if flag else 0)  # found: grep -q, then -H to say where
    kept = sorted(p.name for p in (tmp_path / "cache").iterdir())
    for asked in (asked_plain, asked_again):
        assert asked.count("dpkg-query") == 1 and asked.count("grep") >= 1
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == kept


@pytest.mark.parametrize("present", [(), ("podman",), ("containerd",), ("dockerd", "containerd", "podman")])
def test_the_fact_names_the_runtimes_on_the_path(tmp_path, present):
    """`tools`: which of dockerd, podman and containerd the host has (runtimes.resolve decides from
    them where client_runtimes is not declared). The PATH holds this machine's tools but those three,
    and stand-ins for the ones the case has."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for name in os.listdir(directory):
            if name not in ("dockerd", "podman", "containerd", "docker") and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(directory, name))
    for name in present:
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"))
    result = subprocess.run([str(bin_dir / "sh"), "-c", command], capture_output=True, text=True, check=True,
                            env={"PATH": str(bin_dir)})
    assert DockerHostState().process(result.stdout.splitlines()).tools == set(present)


SECRET_TOML = '''version = 2
[plugins."io.containerd.grpc.v1.cri".registry.configs."registry:5000".auth]
  username = "nodes"
  password = "s3cret \\" = x"
[plugins."io.containerd.grpc.v1.cri".registry.configs."other:443"]
  auth = { username = "them", password = "other-secret" }
  "identitytoken"="tok-secret"
  configs.other.auth.password= 'dotted-secret'
  passwords = "not a secret key"
  # password = "commented-secret"
'''


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("separator", [False, True])
def test_a_masked_check_shows_no_secret_and_says_which_line_holds_it(tmp_path, shell, separator):
    """containerd's config.toml: each secret's value masked with its line number, which the apply
    script reads the line back from (runtime_config.MASKED_LINE)."""
    content = SECRET_TOML + ('x = "\x1f"\n' if separator else "")
    (tmp_path / "config.toml").write_text(content)
    command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"),
                                 checks=(("masked", "config", str(tmp_path / "config.toml")),))
    result = subprocess.run([shell, "-c", f"docker() {{ return 1; }}\n{command}"], capture_output=True, text=True,
                            check=True)
    for secret in ("s3cret", "other-secret", "tok-secret", "dotted-secret", "commented-secret"):
        assert secret not in result.stdout
    lines = DockerHostState().process(result.stdout.splitlines()).lines["config"]
    original = content.splitlines()
    assert len(lines) == len(original)
    masked = {number: line for number, line in enumerate(lines, 1) if line != original[number - 1]}
    assert sorted(masked) == [4, 6, 7, 8, 10]  # a password commented out is one too
    for number, line in masked.items():
        found = runtime_config.MASKED_LINE.search(line)
        assert found and int(found.group(1)) == number
        assert original[number - 1].startswith(line[:found.start()] + "=")  # the key, as it was


def test_a_local_users_login_stamp_is_read_from_their_home(tmp_path):
    """A "home_stamp" check: the home from the passwd database (getent), the stamp while config.json
    mentions the registry; a symbolic link in place of either file is not followed."""
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text('{"auths": {"registry:5000": {}}}')
    (home / ".docker" / "config.json").chmod(0o600)
    (home / ".docker" / "regdeploy-login").write_text("robot-a $2b$10$hash\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "getent").write_text(f'#!/bin/sh\n[ "$2" = builder ] && echo "builder:x:1000:1000::{home}:/bin/sh"\n')
    (bin_dir / "getent").chmod(0o755)
    checks = (("home_stamp", "login.builder", "builder", '"registry:5000"'),
              ("home_stamp", "login.ghost", "ghost", '"registry:5000"'))

    def stamps():
        command = host_state_command(tmp_path, path=str(tmp_path / "daemon.json"), checks=checks)
        result = subprocess.run(["sh", "-c", f"docker() {{ return 1; }}\n{command}"], capture_output=True, text=True,
                                check=True, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
        return DockerHostState().process(result.stdout.splitlines()).stamps

    assert stamps() == {"login.builder": "robot-a $2b$10$hash 600"}
    (home / ".docker" / "regdeploy-login").rename(tmp_path / "elsewhere")
    (home / ".docker" / "regdeploy-login").symlink_to(tmp_path / "elsewhere")
    assert stamps() == {}


def test_a_running_check_reports_the_units_systemd_has_active():
    """("running", label, unit): systemd's /run/systemd/units/invocation:UNIT link, tested by the shell."""
    command = DockerHostState().command(path="/nonexistent/daemon.json",
                                        checks=(("running", "token_service", "regdeploy-token.service"),))
    assert "[ -L /run/systemd/units/invocation:regdeploy-token.service ] && echo running=token_service" in command
    state = DockerHostState().process(["running=token_service", "daemon.json=absent"])
    assert state.running == {"token_service"}
    assert DockerHostState().process(["daemon.json=absent"]).running == set()
