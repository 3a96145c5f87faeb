"""The fleet as it really is, on the test lab (lab_config.TEST_LAB_OS): Debian 12 with Docker 20.10,
Debian 13 with Docker 26, sid with Docker 28 and the containerd image store, a Podman host and a
containerd host (no Docker on either). The verify suite covers the round trip on every runtime in
plain HTTP at the end of the session; here: what each host is, how daemon.json is checked on each
Docker, and the switch to TLS with authentication and back on every runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab import config as lab_config
from tests.access import REPO_ROOT, run_deploy

SPECS = dict(zip(lab_config.hostnames(lab_config.TEST_LAB_CLIENTS),
                 (lab_config.HostSpec.parse(s) for s in lab_config.TEST_LAB_OS.split(","))))
DOCKER_HOSTS = [h for h, spec in SPECS.items() if spec.role not in lab_config.WITHOUT_DOCKER]
DOCKER_CLIENTS = [h for h in DOCKER_HOSTS if h != "registry"]
# Docker's major version per release (Debian's docker.io).
DOCKER_MAJOR = {"bookworm": "20", "trixie": "26", "sid": "28"}


@pytest.fixture(scope="module")
def fleet_lab(lab_session):
    lab_session.ensure_deployed()
    return lab_session.access()


@pytest.mark.parametrize("hostname", list(SPECS))
def test_each_host_runs_what_its_release_and_role_ship(fleet_lab, hostname):
    spec = SPECS[hostname]
    release = fleet_lab.ssh(hostname, ". /etc/os-release; echo ${VERSION_CODENAME:-sid}")
    assert release == spec.suite or (spec.suite == "sid" and release in ("sid", "forky")), release
    if spec.role in lab_config.WITHOUT_DOCKER:
        assert fleet_lab.ssh(hostname, "command -v dockerd || echo none") == "none"
        tool = {"podman": "podman --version", "containerd": "containerd --version"}[spec.role]
        assert fleet_lab.ssh(hostname, tool)
        return
    version = fleet_lab.ssh(hostname, "docker version -f '{{.Server.Version}}'")
    assert version.split(".")[0] == DOCKER_MAJOR[spec.suite], version
    driver = fleet_lab.ssh(hostname, "docker info -f '{{.DriverStatus}}'")
    assert ("io.containerd.snapshotter" in driver) == (spec.role == "containerd-store"), driver


def test_daemon_json_is_checked_by_dockerd_itself_from_docker_23_on(fleet_lab, lab_session):
    """Docker 26 and 28 check a new daemon.json with `dockerd --validate`; 20.10 has no such flag and
    regdeploy's list of known keys stands in. Either way the file stays as it was."""
    hostile = '{"log-opts": {"max-size": "10m"}, "not-a-dockerd-option": true}'
    before = {h: fleet_lab.ssh(h, "cat /etc/docker/daemon.json; pidof dockerd") for h in DOCKER_CLIENTS}
    try:
        for hostname in DOCKER_CLIENTS:
            fleet_lab.ssh(hostname, f"printf '%s' '{hostile}' > /etc/docker/daemon.json")
        for hostname in DOCKER_CLIENTS:
            # One host at a time: the known-keys check stops the whole run before any change, while
            # `dockerd --validate` runs on the host and fails that host alone.
            result = run_deploy(lab_session.inventory, "--limit", hostname)
            assert result.returncode != 0
            modern = SPECS[hostname].suite != "bookworm"
            said = ("dockerd rejects /etc/docker/daemon.json.regdeploy-new" if modern
                    else "unknown daemon.json keys ['not-a-dockerd-option']")
            assert said in result.stderr, (hostname, result.stderr[-3000:])
            assert fleet_lab.ssh(hostname, "cat /etc/docker/daemon.json") == hostile
            assert fleet_lab.ssh(hostname, "pidof dockerd") == before[hostname].split()[-1], "dockerd restarted"
    finally:
        for hostname, text in before.items():
            content = text.rsplit("\n", 1)[0]
            fleet_lab.ssh(hostname, f"cat > /etc/docker/daemon.json <<'EOF'\n{content}\nEOF")
    assert run_deploy(lab_session.inventory).changed_hosts() == set()


def _verify_suite(inventory, env) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify", f"--inventory={inventory}",
         f"--test-image-archive={lab_config.default_lab().test_image_archive}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert result.returncode == 0, result.stdout[-4000:]


def test_tls_with_auth_and_back_on_every_runtime(fleet_lab, lab_session, tmp_path):
    env = {"REGDEPLOY_PASSWORD_CI": "fleet-Pa55"}
    for hostname in DOCKER_CLIENTS:
        fleet_lab.load_image_archive(hostname, lab_session.lab.test_image_archive)
        fleet_lab.ssh(hostname, "docker rm -f keeper >/dev/null 2>&1; docker run -d --name keeper busybox:latest "
                                "sleep 100000 >/dev/null")
    keepers = {h: fleet_lab.ssh(h, "docker inspect -f '{{.State.StartedAt}}' keeper") for h in DOCKER_CLIENTS}
    containerd = "client5"
    assert SPECS[containerd].role == "containerd"
    pid = fleet_lab.ssh(containerd, "systemctl show -P MainPID containerd")

    secure = fleet_lab.inventory_with(tmp_path / "secure.py", registry_tls=True, registry_auth=True,
                                      registry_users=["ci"], registry_tls_dir=str(tmp_path / "tls"))
    first = run_deploy(secure, env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    assert run_deploy(secure, env=env).changed_hosts() == set()
    for hostname, started in keepers.items():
        assert fleet_lab.ssh(hostname, "docker inspect -f '{{.State.StartedAt}}' keeper") == started, hostname
    # hosts.toml and the CA changed; config.toml only for CRI's credentials, at the login's place: the
    # one containerd restart, since containerd reads config.toml only at start.
    assert ("Make containerd trust the registry | Write containerd's /etc/containerd/certs.d/registry:5000/hosts.toml",
            containerd) in first.changes()
    assert ("Log in to the registry | Log containerd in to registry:5000 as ci", containerd) in first.changes()
    assert not [name for name, h in first.changes() if h == containerd and "Set config_path" in name]
    assert fleet_lab.ssh(containerd, "systemctl show -P MainPID containerd") != pid
    assert fleet_lab.ssh(containerd, "stat -c %a /etc/containerd/config.toml") == "600"
    # Docker 26, Docker 28 with the containerd store, Podman and containerd (CRI) over TLS, each logged in.
    _verify_suite(secure, env)

    # Back with the same registry_tls_dir, as an operator's group_data keeps it: the CA files regdeploy
    # put on the hosts are its own (it compares them with that CA) and are taken away again.
    plain_inventory = fleet_lab.inventory_with(tmp_path / "plain.py", registry_tls_dir=str(tmp_path / "tls"))
    plain = run_deploy(plain_inventory)
    assert plain.returncode == 0, plain.stderr[-4000:]
    # The credentials regdeploy gave containerd go with authentication.
    assert ("Make containerd trust the registry | Remove regdeploy's credentials for registry:5000 from "
            "/etc/containerd/config.toml and restart containerd", containerd) in plain.changes(), plain.changes()
    assert fleet_lab.ssh(containerd, "grep -c -e password -e username /etc/containerd/config.toml || true") == "0"
    assert run_deploy(plain_inventory).changed_hosts() == set()
    assert run_deploy(lab_session.inventory).changed_hosts() == set()
    for hostname, started in keepers.items():
        assert fleet_lab.ssh(hostname, "docker inspect -f '{{.State.StartedAt}}' keeper") == started, hostname
        fleet_lab.ssh(hostname, "docker rm -f keeper >/dev/null")
