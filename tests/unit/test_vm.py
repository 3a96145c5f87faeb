"""The VM tier's pure parts: names, addresses, the kernel command line, qemu's arguments and the KVM
probe's verdict (no VM is booted here; tests/vm boots them)."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from lab import config, vm, vm_image


@pytest.mark.parametrize("name", ["regdeploy-vm", "regdeploy-lab", "a-rather-long-lab-name-for-a-ci-job"])
def test_interface_names_fit_the_kernels_limit_and_differ_per_lab(name):
    lab = config.Lab(name=name)
    assert len(vm.bridge_name(lab)) <= 15 and len(vm.tap_name(lab, 199)) <= 15
    assert vm.bridge_name(lab) != vm.bridge_name(config.Lab(name=name + "-2"))
    assert vm.tap_name(lab, 1) != vm.tap_name(lab, 2)


def test_mac_addresses_are_local_and_per_host():
    lab = config.Lab(name="regdeploy-vm")
    macs = {vm.mac_address(lab, i) for i in range(40)}
    assert len(macs) == 40 and all(m.startswith("52:54:") and len(m) == 17 for m in macs)


def test_vm_labs_take_their_own_subnet(monkeypatch):
    monkeypatch.delenv("REGDEPLOY_LAB_SUBNET", raising=False)
    lab = config.default_lab("regdeploy-vm")
    assert lab.subnet_prefix.startswith("172.29.") and vm.vm_lab(lab).subnet_prefix.startswith("172.30.")
    assert vm.vm_lab(lab).name == lab.name
    monkeypatch.setenv("REGDEPLOY_LAB_SUBNET", "10.9.8")
    assert vm.vm_lab(config.default_lab("regdeploy-vm")).subnet_prefix == "10.9.8"


def test_the_kernel_command_line_carries_address_name_and_key():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB lab@controller\n"
    line = vm.kernel_cmdline("client1", "172.30.4.11", "172.30.4.1", key)
    words = dict(w.partition("=")[::2] for w in line.split())
    assert words["root"] == "/dev/vda" and words["console"] == "ttyS0" and words["systemd.hostname"] == "client1"
    assert words["ip"] == "172.30.4.11::172.30.4.1:255.255.255.0:client1:eth0:off"
    # One word on the command line, decoded back to the key exactly.
    assert base64.b64decode(words["lab.key"]).decode() == key.strip()


@pytest.mark.parametrize("accel, expected", [
    (vm.Accel(*vm.KVM, "booted"), ["-accel", "kvm", "-cpu", "host"]),
    (vm.Accel(*vm.TCG, "no kvm"), ["-accel", "tcg,thread=multi", "-cpu", "max"]),
])
def test_qemu_boots_the_image_kernel_on_the_overlay_and_tap(accel, expected, tmp_path):
    image = vm_image.VmImage(Path("/images/vm-bookworm"))
    argv = vm.qemu_command(accel, image, tmp_path / "client1.qcow2", "root=/dev/vda", "rdl000001t1",
                           "52:54:00:00:00:01", tmp_path, "client1")
    assert argv[0] == "qemu-system-x86_64" and argv[1:5] == expected
    joined = " ".join(argv)
    assert f"-kernel {image.kernel} -initrd {image.initrd} -append root=/dev/vda" in joined
    assert f"file={tmp_path / 'client1.qcow2'},if=virtio" in joined
    assert "tap,id=net0,ifname=rdl000001t1,script=no" in joined and "mac=52:54:00:00:00:01" in joined
    assert f"-pidfile {tmp_path / 'client1.pid'} -daemonize" in joined
    assert f"file:{tmp_path / 'client1.console.log'}" in joined


@pytest.mark.parametrize("console, returncode, stderr, booted, reason", [
    ("[    0.9] Run /init as init process\n", None, "", True, "booted"),
    ("[    0.9] Run /init as init process\n", 0, "", True, "booted"),
    ("", -6, "qemu: failed to set MSR 0x10a\nAssertion failed", False, "exited (-6): Assertion failed"),
    ("", None, "", False, "printed nothing"),
    ("[    0.0] Linux version 6.1\n", None, "", False, "printed nothing"),
])
def test_the_kvm_probe_trusts_only_a_kernel_that_got_to_init(console, returncode, stderr, booted, reason):
    verdict, why = vm.probe_verdict(console, returncode, stderr)
    assert verdict is booted and reason in why


def test_an_image_is_stale_once_its_tree_is_rebuilt(tmp_path):
    rootfs, image = tmp_path / "rootfs", vm_image.VmImage(tmp_path / "vm-bookworm")
    (rootfs / "var/lib/dpkg").mkdir(parents=True)
    image.root.mkdir()
    assert not vm_image.up_to_date(image, rootfs)
    status = rootfs / "var/lib/dpkg/status"
    status.write_text("")
    for part in (image.disk, image.kernel, image.initrd):
        part.write_text("")
    assert vm_image.up_to_date(image, rootfs)
    later = image.disk.stat().st_mtime + 10
    os.utime(status, (later, later))
    assert not vm_image.up_to_date(image, rootfs)


def test_the_hosts_block_names_every_vm_and_is_replaced_not_appended(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n10.0.0.5 printer\n")
    lab = config.Lab(name="regdeploy-vm", subnet_prefix="172.30.7")
    for names in (["registry", "client1"], ["registry", "client1"], ["registry", "client1", "client2"]):
        subprocess.run(["sh", "-c", vm.hosts_block_script(lab, names, str(hosts))], check=True)
    assert hosts.read_text() == ("127.0.0.1 localhost\n10.0.0.5 printer\n" + vm.HOSTS_BEGIN + "\n"
                                 "172.30.7.10 registry\n172.30.7.11 client1\n172.30.7.12 client2\n"
                                 + vm.HOSTS_END + "\n")
