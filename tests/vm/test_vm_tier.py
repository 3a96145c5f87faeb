"""The VM tier (`python -m lab vm-check`): the unchanged deploy and verify suite on real virtual
machines (1 server + 1 client, lab regdeploy-vm): a cold deploy, a second run that changes nothing,
the verify suite with its push/pull round trip, a real reboot of the server with Docker and the
registry back from systemd at boot and every image intact, and `down` removing what the lab made.

The tests run in file order and share the VMs. On a controller where KVM cannot boot a stock kernel
they run under TCG: expect minutes, not seconds (docs/contributing/lab.md gives this machine's timings).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from lab import config as lab_config
from lab import hosts as lab_hosts
from lab import vm, vm_image
from regdeploy.registry_api import RegistryClient, base_url
from tests.access import REPO_ROOT, Access, run_deploy

VM_LAB = vm.vm_lab(lab_config.default_lab("regdeploy-vm"))
HOSTS = ("registry", "client1")


@pytest.fixture(scope="module")
def vms(request, tmp_path_factory) -> Access:
    if request.config.getoption("--inventory"):
        pytest.skip("lab-only test: --inventory points at your own hosts")
    lab_hosts.down(VM_LAB)
    lab_hosts.up(VM_LAB, clients=1, vms=True)
    yield Access.load(VM_LAB.inventory_path, tmp_path_factory.mktemp("vm"))
    if not request.config.getoption("--keep-lab"):
        lab_hosts.down(VM_LAB)


def registry_images(access: Access) -> dict[tuple[str, str], str | None]:
    """Every (repository, tag) in the registry and its manifest digest, read from the controller."""
    return RegistryClient(base_url(access.fleet.registry_api_address)).manifests()


@pytest.mark.parametrize("hostname", HOSTS)
def test_the_hosts_are_virtual_machines_with_their_own_kernel(vms, hostname):
    assert vms.ssh(hostname, "systemd-detect-virt") in ("qemu", "kvm")
    kernel = vms.ssh(hostname, "uname -r")
    assert kernel.endswith("-cloud-amd64") and kernel != os.uname().release
    # The root filesystem is a disk of its own, not a share of the controller's.
    assert vms.ssh(hostname, "findmnt -n -o SOURCE,FSTYPE /") == "/dev/vda ext4"


def test_deploy_then_a_second_run_changes_nothing(vms):
    first = run_deploy(vms.inventory)
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.changed_hosts() == set(HOSTS)
    again = run_deploy(vms.inventory)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.changed_hosts() == set(), again.changes()


def test_the_verify_suite_passes_with_its_round_trip(vms, tmp_path):
    """The suite a user runs on their own fleet, unchanged: `pytest tests/verify --inventory=...`."""
    report = tmp_path / "verify.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/verify", f"--inventory={vms.inventory}",
         f"--test-image-archive={VM_LAB.test_image_archive}", f"--junitxml={report}", "-p", "no:cacheprovider",
         "-q"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:]
    cases = ElementTree.parse(report).getroot().iter("testcase")
    outcomes = {f"{c.get('classname')}.{c.get('name')}": [child.tag for child in c] for c in cases}
    assert not [name for name, tags in outcomes.items() if tags], "not passed: " + str(
        {name: tags for name, tags in outcomes.items() if tags})
    round_trips = [name for name in outcomes if "round_trip" in name]
    assert len(round_trips) >= len(HOSTS), sorted(outcomes)


def test_a_real_reboot_brings_the_registry_back_with_every_image(vms):
    vms.load_image_archive("client1", VM_LAB.test_image_archive)
    target = f"{vms.fleet.registry_address}/vm-check/busybox:before-reboot"
    vms.ssh("client1", f"docker tag {lab_config.TEST_IMAGE} {target} && docker push -q {target}")
    before = registry_images(vms)
    assert ("vm-check/busybox", "before-reboot") in before and all(before.values())
    container = vms.ssh("registry", "docker inspect -f '{{.Id}}' registry")
    boot = vm.boot_id(VM_LAB, "registry")

    lab_hosts.reboot(VM_LAB, "registry")

    assert vm.boot_id(VM_LAB, "registry") != boot, "the VM did not reboot"
    # SSH answers before the boot is over (under TCG Docker starts tens of seconds later).
    system = vms.ssh("registry", "systemctl is-system-running --wait", check=False)
    assert vms.ssh("registry", "systemctl is-enabled docker; systemctl is-active docker", check=False).split() == [
        "enabled", "active"], f"after the reboot the system is {system}"
    # Brought back by its restart policy, not re-created by anyone.
    vms.wait_until_serving("registry", limit=300)
    assert vms.ssh("registry", "docker inspect -f '{{.Id}} {{.State.Running}}' registry") == f"{container} true"
    assert registry_images(vms) == before
    vms.ssh("client1", f"docker image rm {target} && docker pull -q {target}")
    pulled = vms.ssh("client1", f"docker image inspect -f '{{{{index .RepoDigests 0}}}}' {target}")
    assert pulled.endswith(before[("vm-check/busybox", "before-reboot")])
    # And the rebooted fleet is still converged.
    again = run_deploy(vms.inventory)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.changed_hosts() == set(), again.changes()


def test_down_removes_what_the_lab_made_and_nothing_else(vms):
    state = vm.load_state(VM_LAB)
    pids = [int((vm.run_dir(VM_LAB) / f"{h}.pid").read_text()) for h in HOSTS]
    # Another bridge and forwarding rule on the controller, not the lab's: down must leave them.
    other = "rdlsentinel"
    other_rule = ["FORWARD", "-i", other, "-o", other, "-j", "ACCEPT"]
    subprocess.run(["ip", "link", "add", other, "type", "bridge"], check=True)
    subprocess.run(["iptables", "-w", "-A", *other_rule], check=True)
    try:
        lab_hosts.down(VM_LAB)
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or "qemu" not in Path(f"/proc/{pid}/cmdline").read_text()
        links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True).stdout
        assert state["bridge"] not in links and not [t for t in state["taps"] if t in links]
        assert subprocess.run(["iptables", "-w", "-C", *state["forward_rule"]], capture_output=True).returncode != 0
        assert not vm.run_dir(VM_LAB).exists() and not VM_LAB.inventory_path.exists()
        # Kept: the image VMs are made from, the other bridge and rule.
        assert vm_image.vm_image(VM_LAB, lab_config.DEBIAN_SUITE).complete()
        assert other in links
        assert subprocess.run(["iptables", "-w", "-C", *other_rule], capture_output=True).returncode == 0
    finally:
        subprocess.run(["iptables", "-w", "-D", *other_rule], capture_output=True)
        subprocess.run(["ip", "link", "del", other], capture_output=True)
