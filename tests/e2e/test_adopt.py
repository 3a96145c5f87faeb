"""Adopting a registry that already runs (started by hand, as the manual says): never come back empty.

A lab of its own (regdeploy-adopt), four hosts, each set up by hand before regdeploy ever runs:
- client1: the manual's exact command (storage in the image's anonymous volume);
- client2: a named volume;
- client3: a bind mount elsewhere (/srv/registry-data);
- registry: another container (not a registry) already publishing port 5000.
Each host is the single registry server of its own inventory. Every image, tag and manifest digest
is read through the registry API (from the controller) before and after, and pulled back.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lab import config as lab_config
from regdeploy.registry_api import RegistryClient
from tests.access import Access, own_lab, run_deploy

ADOPT_LAB = lab_config.default_lab("regdeploy-adopt")
MANUAL = "docker run -d -p 5000:5000 --restart=always --name registry"
SETUPS = {
    "client1": f"{MANUAL} registry:2",
    "client2": f"{MANUAL} -v registry-data:/var/lib/registry registry:2",
    "client3": f"mkdir -p /srv/registry-data && {MANUAL} -v /srv/registry-data:/var/lib/registry registry:2",
}
# Two different images (a second layer on busybox), three tags, two namespaces.
PUSH = """set -e
docker rm -f mk >/dev/null 2>&1 || true
docker run --name mk busybox sh -c 'echo {host} > /made-by-hand'
docker commit mk team/tools:2.0 >/dev/null && docker rm mk >/dev/null
for ref in lab/busybox:1 lab/busybox:latest; do docker tag busybox localhost:5000/$ref; docker push -q localhost:5000/$ref; done
docker tag team/tools:2.0 localhost:5000/team/tools:2.0 && docker push -q localhost:5000/team/tools:2.0
"""


# client3's hand-made registry is adopted straight into TLS with authentication: the copy is then
# verified by a registry of the new config (HTTPS, htpasswd) on loopback.
SECURE = {"client3"}


class AdoptLab:
    def __init__(self, lab_access: Access, workdir: Path):
        self.workdir = workdir
        self.lab_access = lab_access
        self.passwords = workdir / "passwords"
        self.passwords.write_text("ci:adopt-Pa55\n")
        self.passwords.chmod(0o600)

    def secure_data(self, hostname: str) -> dict:
        if hostname not in SECURE:
            return {}
        return {"registry_tls": True, "registry_auth": True, "registry_users": ["ci"],
                "registry_password_file": str(self.passwords), "registry_tls_dir": str(self.workdir / "tls")}

    def inventory(self, hostname: str) -> Path:
        """An inventory whose single registry server is `hostname` (no other host)."""
        return self.lab_access.single_server_inventory(hostname, self.workdir / f"inventory-{hostname}.py",
                                                       registry_image_archive=str(ADOPT_LAB.registry_archive),
                                                       **self.secure_data(hostname))

    def ssh(self, hostname: str, command: str, check: bool = True) -> str:
        return self.lab_access.ssh(hostname, command, check=check)

    def registry(self, hostname: str, port: int = 5000, deployed: bool = False) -> RegistryClient:
        """The registry on `hostname` as the controller reaches it: after a secure deploy over HTTPS,
        verified with the generated CA, as user ci."""
        address = next(h.address for h in self.lab_access.fleet.hosts if h.name == hostname)
        if deployed and hostname in SECURE:
            return RegistryClient(f"https://{address}:{port}", auth=("ci", "adopt-Pa55"),
                                  verify=str(self.workdir / "tls" / "ca.crt"))
        return RegistryClient(f"http://{address}:{port}")



def _install_docker_by_hand(lab: AdoptLab, hostname: str) -> None:
    lab.ssh(hostname, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null 2>&1")
    for archive in (ADOPT_LAB.registry_archive, ADOPT_LAB.test_image_archive):
        lab.lab_access.load_image_archive(hostname, archive)


@pytest.fixture(scope="module")
def adopt_lab(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("adopt")
    with own_lab(request, ADOPT_LAB, 3, workdir) as access:
        lab = AdoptLab(access, workdir)
        # What an operator did by hand before regdeploy, on every host at once.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda h: _install_docker_by_hand(lab, h), ["registry", *SETUPS]))
        for hostname, command in SETUPS.items():
            lab.ssh(hostname, command)
            lab.ssh(hostname, "for i in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:5000/v2/ && break; "
                              "sleep 0.2; done")
            lab.ssh(hostname, PUSH.format(host=hostname))
        yield lab


def _containers(lab: AdoptLab, hostname: str) -> dict[str, dict]:
    names = lab.ssh(hostname, "docker ps -a --format '{{.Names}}'").split()
    return {name: json.loads(lab.ssh(hostname, f"docker container inspect {name}"))[0] for name in names}


def test_dry_run_shows_the_adoption_plan_and_changes_nothing(adopt_lab):
    before = _containers(adopt_lab, "client1")
    plan = run_deploy(adopt_lab.inventory("client1"), "--dry")
    assert plan.returncode == 0, plan.stderr[-4000:]
    planned = [op["name"] for op in plan.output["plan"] if "client1" in op["hosts_with_change"]]
    adopt = [name for name in planned if "Adopt container 'registry' (not created by regdeploy)" in name]
    assert adopt, planned
    assert "storage in anonymous volume" in adopt[0]
    assert "move 2 repositories" in adopt[0] and "to /var/lib/registry" in adopt[0], adopt[0]
    assert _containers(adopt_lab, "client1") == before


def test_a_failed_adoption_puts_the_hand_made_registry_back(adopt_lab):
    # busybox is no registry: the registry started on the copy to verify it never answers.
    registry = adopt_lab.registry("client2")
    before, old = registry.manifests(), _containers(adopt_lab, "client2")["registry"]
    result = run_deploy(adopt_lab.inventory("client2"), "--data", "registry_image=busybox:latest",
                        "--data", f"registry_image_archive={ADOPT_LAB.test_image_archive}",
                        "--data", "registry_ready_timeout=3")
    assert result.returncode != 0
    # busybox given the registry's command cannot even start (regdeploy names the config file as
    # the command); an image that starts but serves nothing fails the next check. Either way:
    assert ("could not start a registry on the copy to verify it" in result.stderr
            or "the registry on the copy in /var/lib/registry does not serve every tag" in result.stderr), \
        result.stderr[-3000:]
    assert "the previous container registry runs again, unchanged" in result.stderr
    after = _containers(adopt_lab, "client2")
    assert set(after) == {"registry"}, "no verifier or renamed container may be left behind"
    assert after["registry"]["Id"] == old["Id"] and after["registry"]["State"]["Running"]
    assert after["registry"]["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert registry.manifests() == before
    # The unfinished copy stays marked as such: the next deploy clears and redoes it.
    assert sorted(adopt_lab.ssh("client2", "ls -A /var/lib/registry").split()) == [
        ".regdeploy-migration-incomplete", "docker"]


@pytest.mark.parametrize("hostname", list(SETUPS))
def test_first_deploy_keeps_every_image_and_digest(adopt_lab, hostname):
    registry = adopt_lab.registry(hostname)
    before = registry.manifests()
    assert len(before) == 3 and len(set(before.values())) == 2, before
    old = _containers(adopt_lab, hostname)["registry"]
    old_storage = next(m for m in old["Mounts"] if m["Destination"] == "/var/lib/registry")

    result = run_deploy(adopt_lab.inventory(hostname))
    assert result.returncode == 0, result.stderr[-4000:]
    assert any(op.startswith("Run the Docker registry | Adopt container 'registry'")
               for op in result.changed_operations(hostname)), result.changed_operations(hostname)

    assert adopt_lab.registry(hostname, deployed=True).manifests() == before
    # The operator is told what was kept and how to remove it once no longer needed.
    assert "regdeploy never deletes either; once you no longer need them: docker rm registry-pre-regdeploy-" \
        in result.stderr
    containers = _containers(adopt_lab, hostname)
    new = containers["registry"]
    assert new["Id"] != old["Id"] and new["State"]["Running"]
    storage = next(m for m in new["Mounts"] if m["Destination"] == "/var/lib/registry")
    assert (storage["Type"], storage["Source"]) == ("bind", "/var/lib/registry")
    # The hand-made container is kept, stopped and never restarted, so its volume is still referenced.
    kept = [c for name, c in containers.items() if name.startswith("registry-pre-regdeploy-")]
    assert len(kept) == 1 and kept[0]["Id"] == old["Id"]
    assert not kept[0]["State"]["Running"] and kept[0]["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert adopt_lab.ssh(hostname, f"test -d {old_storage['Source']}/docker/registry/v2 && echo kept") == "kept"

    # The blobs came along too: pull every image back through the registry's address.
    adopt_lab.ssh(hostname, "docker image rm -f team/tools:2.0 localhost:5000/team/tools:2.0 >/dev/null")
    for repository, tag in before:
        adopt_lab.ssh(hostname, f"docker pull -q {hostname}:5000/{repository}:{tag}")
    assert adopt_lab.ssh(hostname, f"docker run --rm {hostname}:5000/team/tools:2.0 cat /made-by-hand") == hostname

    again = run_deploy(adopt_lab.inventory(hostname))
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.totals["success"] == 0, again.changed_operations(hostname)


def test_a_registry_data_dir_change_keeps_every_image(adopt_lab):
    registry = adopt_lab.registry("client1")
    before = registry.manifests()
    inventory = adopt_lab.inventory("client1")
    moved = run_deploy(inventory, "--data", "registry_data_dir=/srv/moved")
    assert moved.returncode == 0, moved.stderr[-4000:]
    assert any("move 2 repositories" in op and "from /var/lib/registry to /srv/moved" in op
               for op in moved.changed_operations("client1")), moved.changed_operations("client1")
    assert registry.manifests() == before
    assert adopt_lab.ssh("client1", "test -d /var/lib/registry/docker/registry/v2 && echo kept") == "kept"
    assert run_deploy(inventory, "--data", "registry_data_dir=/srv/moved").totals["success"] == 0

    # Back to the default directory, which still holds the old copy: refused, never merged.
    container = _containers(adopt_lab, "client1")["registry"]["Id"]
    refused = run_deploy(inventory)
    assert refused.returncode != 0
    assert "/var/lib/registry already holds other data; regdeploy does not merge registries" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert _containers(adopt_lab, "client1")["registry"]["Id"] == container
    assert registry.manifests() == before


def test_a_port_held_by_another_container_stops_the_deploy_unchanged(adopt_lab):
    adopt_lab.ssh("registry", "docker run -d --name web -p 5000:5000 busybox sleep 100000")
    before = _containers(adopt_lab, "registry")
    daemon_json = adopt_lab.ssh("registry", "cat /etc/docker/daemon.json 2>/dev/null || echo absent")
    result = run_deploy(adopt_lab.inventory("registry"))
    assert result.returncode != 0
    assert "port 5000 is already published by container 'web'" in result.stderr
    assert "nothing was changed" in result.stderr
    assert _containers(adopt_lab, "registry") == before
    assert adopt_lab.ssh("registry", "cat /etc/docker/daemon.json 2>/dev/null || echo absent") == daemon_json
