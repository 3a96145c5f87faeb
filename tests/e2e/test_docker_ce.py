"""`docker_install_source=docker-ce` for real, against the lab's signed stand-in of Docker's apt
repository (lab/apt_mirror.py: metapackages named like Docker's that install Debian's docker.io).

A lab of its own (regdeploy-ce): client1 serves the mirrors over HTTP; registry is installed from
the good one; client2 meets a mirror signed by another key, an unreachable one, and then the
switch from Debian's docker.io.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab import apt_mirror
from lab import config as lab_config
from tests.access import Access, own_lab, run_deploy

CE_LAB = lab_config.default_lab("regdeploy-ce")
PORT = 8080
KEYRING = "/etc/apt/keyrings/docker.gpg"
SOURCE = "/etc/apt/sources.list.d/docker.sources"


@pytest.fixture(scope="module")
def ce_lab(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("ce")
    with own_lab(request, CE_LAB, 2, work) as access:
        yield from _serve_mirrors(access, work)


def _serve_mirrors(access: Access, work: Path):
    docker_io = _docker_io_deb()
    good, bad = work / "mirror" / "good", work / "mirror" / "bad"
    fingerprints = {"good": apt_mirror.build(good, docker_io),
                    "bad": apt_mirror.build(bad, docker_io, wrong_key=True, packages_from=good)}
    tar = subprocess.Popen(["tar", "-C", str(work / "mirror"), "-c", "."], stdout=subprocess.PIPE)
    access.ssh("client1", "mkdir -p /srv/mirror && tar -C /srv/mirror -x", stdin=tar.stdout)
    assert tar.wait() == 0
    access.ssh("client1", f"systemd-run --unit regdeploy-mirror python3 -m http.server {PORT} --directory /srv/mirror")
    access.ssh("client1", f"for i in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:{PORT}/good/linux/debian/gpg"
                          " && exit 0; sleep 0.1; done; exit 1")
    yield access, work, fingerprints


def _docker_io_deb() -> Path:
    """Debian's docker.io, as downloaded when the lab's images were built."""
    return max((CE_LAB.images_dir / "rootfs/var/cache/apt/archives").glob("docker.io_*.deb"))


def _inventory(access: Access, work: Path, hostname: str, mirror: str, source: str = "docker-ce") -> Path:
    return access.single_server_inventory(
        hostname, work / f"inventory-{hostname}.py", registry_image_archive=str(CE_LAB.registry_archive),
        docker_install_source=source, docker_ce_repo_url=f"http://client1:{PORT}/{mirror}/linux")


def _nothing_installed(access: Access, hostname: str) -> None:
    assert access.ssh(hostname, f"ls {KEYRING} {SOURCE} 2>/dev/null; dpkg -l 'docker*' 'containerd*' 2>/dev/null "
                                "| grep ^ii || true") == ""


def test_a_fresh_host_installs_docker_ce_from_the_signed_mirror(ce_lab):
    access, work, fingerprints = ce_lab
    inventory = _inventory(access, work, "registry", "good")
    result = run_deploy(inventory)
    assert result.returncode == 0, result.stderr[-4000:]
    # The key, fetched from <repo>/gpg, dearmored (binary) into /etc/apt/keyrings; the source, deb822, signed-by.
    assert access.ssh("registry", f"gpg --show-keys --with-colons {KEYRING} | awk -F: '$1 == \"fpr\" {{print $10; exit}}'") \
        == fingerprints["good"]
    assert access.ssh("registry", f"head -c 1 {KEYRING} | od -An -c").strip() != "-", "the keyring must be dearmored"
    source = access.ssh("registry", f"cat {SOURCE}")
    assert f"URIs: http://client1:{PORT}/good/linux/debian" in source
    assert "Suites: bookworm" in source and "Components: stable" in source and f"Signed-By: {KEYRING}" in source
    installed = access.ssh("registry", "dpkg-query -W -f='${Package} ${Version}\\n' docker-ce docker-ce-cli containerd.io")
    version = apt_mirror.stand_in_version(_docker_io_deb())
    assert sorted(installed.splitlines()) == sorted(f"{name} {version}"
                                                    for name in ("docker-ce", "docker-ce-cli", "containerd.io"))
    assert access.host("registry").service("docker").is_running
    assert "registry:5000" in access.ssh("registry", "docker info --format '{{range $k, $v := .RegistryConfig.IndexConfigs}}{{$k}} {{end}}'").split()
    assert access.ssh("registry", "curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/") == "200"
    again = run_deploy(inventory)
    assert again.returncode == 0 and again.totals["success"] == 0, again.stderr[-3000:]


def test_a_mirror_signed_by_another_key_is_refused_and_leaves_nothing(ce_lab):
    access, work, fingerprints = ce_lab
    result = run_deploy(_inventory(access, work, "client2", "bad"))
    assert result.returncode != 0
    assert f"apt refuses http://client1:{PORT}/bad/linux/debian (bookworm stable) with the key published at " \
           f"http://client1:{PORT}/bad/linux/debian/gpg (fingerprint {fingerprints['bad']})" in result.stderr
    assert "NO_PUBKEY" in result.stderr and "is not signed" in result.stderr  # apt's own reason, shown
    assert "[client2]" in result.stderr
    _nothing_installed(access, "client2")


def test_an_unreachable_mirror_is_a_clear_error(ce_lab):
    access, work, _ = ce_lab
    inventory = access.single_server_inventory(
        "client2", work / "inventory-unreachable.py", registry_image_archive=str(CE_LAB.registry_archive),
        docker_install_source="docker-ce", docker_ce_repo_url="http://client1:8099/linux")
    result = run_deploy(inventory)
    assert result.returncode != 0
    assert "cannot fetch Docker's apt key from http://client1:8099/linux/debian/gpg" in result.stderr
    _nothing_installed(access, "client2")


def test_switching_a_distro_host_to_docker_ce_is_refused_unchanged(ce_lab):
    access, work, _ = ce_lab
    distro = run_deploy(_inventory(access, work, "client2", "good", source="distro"))
    assert distro.returncode == 0, distro.stderr[-3000:]
    before = access.ssh("client2", "dpkg -l | grep ^ii | md5sum; systemctl show docker -p MainPID --value")
    result = run_deploy(_inventory(access, work, "client2", "good"))
    assert result.returncode != 0
    assert "host 'client2' runs Debian's docker.io; docker_install_source='docker-ce' would replace" in result.stderr
    assert "nothing was changed" in result.stderr
    assert access.ssh("client2", "dpkg -l | grep ^ii | md5sum; systemctl show docker -p MainPID --value") == before
    assert access.ssh("client2", f"ls {SOURCE} 2>/dev/null || echo none") == "none"
