"""The VM tier's bootable image: the container tier's debootstrapped tree plus Debian's cloud kernel,
as an ext4 disk (qcow2) that qemu boots directly (-kernel/-initrd, no bootloader).

    .lab/images/vm-<suite>/disk.qcow2    the root filesystem, the base of every VM's overlay
    .lab/images/vm-<suite>/vmlinuz       the cloud kernel and its initramfs (virtio drivers)
    .lab/images/vm-<suite>/initrd.img

Same tree, same precached Docker packages as the container hosts: the VMs differ only where a
real machine differs (its own kernel, networkd, module loading, an fstab).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import config, image
from .log import step

KERNEL_PACKAGE = "linux-image-cloud-amd64"
# The disk's size as the VM sees it; the image and every overlay stay sparse (what is written).
DISK_SIZE = "8G"

# Runs inside a copy of the host tree (chroot) after the kernel is installed.
VM_SETUP_SCRIPT = r"""
set -eu
rm -rf /lab-downloads /etc/resolv.conf
# A VM loads its kernel modules (overlay, br_netfilter for Docker); the container hosts mask this.
rm -f /etc/systemd/system/systemd-modules-load.service
# The address comes from the kernel command line (ip=...): systemd-network-generator turns it into
# a .network file that networkd applies, so one image serves every VM.
systemctl enable systemd-networkd.service systemd-network-generator.service >/dev/null 2>&1
echo '/dev/vda / ext4 defaults 0 1' > /etc/fstab
# Docker writes a container's /etc/hosts; a machine has its own (the lab adds its hosts' names).
printf '%s\n' '127.0.0.1 localhost' '::1 localhost ip6-localhost ip6-loopback' > /etc/hosts
# The lab's public key comes on the kernel command line too (lab.key=<base64>).
cat > /etc/systemd/system/lab-authorized-key.service <<'UNIT'
[Unit]
Description=Authorize the lab's SSH key given on the kernel command line
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'for w in $(cat /proc/cmdline); do case $w in lab.key=*) echo "$${w#lab.key=}" | base64 -d > /root/.ssh/authorized_keys.new && chmod 600 /root/.ssh/authorized_keys.new && mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys;; esac; done'

[Install]
WantedBy=multi-user.target
UNIT
systemctl enable lab-authorized-key.service >/dev/null 2>&1
"""


@dataclass(frozen=True)
class VmImage:
    root: Path

    @property
    def disk(self) -> Path:
        return self.root / "disk.qcow2"

    @property
    def kernel(self) -> Path:
        return self.root / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.root / "initrd.img"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd))


def vm_image(lab: config.Lab, suite: str) -> VmImage:
    return VmImage(lab.images_dir / f"vm-{suite}")


def up_to_date(found: VmImage, rootfs: Path) -> bool:
    """The image exists and was made after the tree it comes from (`lab images --rebuild` remakes the tree)."""
    status = rootfs / "var/lib/dpkg/status"
    return found.complete() and status.is_file() and found.disk.stat().st_mtime >= status.stat().st_mtime


def _chroot(tree: Path, script: str) -> None:
    result = subprocess.run(["chroot", str(tree), "/bin/sh", "-c", script], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"building the VM image failed:\n{(result.stdout + result.stderr)[-3000:]}")


def build(lab: config.Lab, suite: str = config.DEBIAN_SUITE, rebuild: bool = False) -> VmImage:
    """Build the VM image of `suite` unless an up-to-date one exists (the host tree first, if missing)."""
    rootfs = lab.rootfs(suite)
    if rebuild or not (rootfs / "var/lib/dpkg/status").is_file():
        image.build_all(lab, rebuild=rebuild, suites=(suite,))
    found = vm_image(lab, suite)
    if up_to_date(found, rootfs) and not rebuild:
        return found
    for tool in ("qemu-img", "mkfs.ext4"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: run lab/bootstrap.sh")
    work = found.root.with_name(found.root.name + ".work")
    shutil.rmtree(work, ignore_errors=True)
    tree, staged = work / "root", VmImage(work / "image")
    staged.root.mkdir(parents=True)
    try:
        with step(f"copy the {suite} host tree and install {KERNEL_PACKAGE} into it"):
            subprocess.run(["cp", "-a", str(rootfs), str(tree)], check=True)
            shutil.copy("/etc/resolv.conf", tree / "etc/resolv.conf")
            # The fresh package lists must match the apt cache: Docker's packages are downloaded
            # again for them (what the tree already holds is not fetched twice).
            _chroot(tree, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                          f"{KERNEL_PACKAGE} && DEBIAN_FRONTEND=noninteractive apt-get install -q -y --download-only "
                          + " ".join(config.PRECACHED_PACKAGES[suite]))
            _chroot(tree, VM_SETUP_SCRIPT)
        with step(f"make the {suite} VM disk ({DISK_SIZE}, ext4, qcow2)"):
            kernels = sorted((tree / "boot").glob("vmlinuz-*"))
            if not kernels:
                raise SystemExit(f"{KERNEL_PACKAGE} left no kernel in /boot")
            version = kernels[-1].name.removeprefix("vmlinuz-")
            shutil.copy(kernels[-1], staged.kernel)
            shutil.copy(tree / "boot" / f"initrd.img-{version}", staged.initrd)
            raw = work / "disk.raw"
            subprocess.run(["truncate", "-s", DISK_SIZE, str(raw)], check=True)
            # mkfs.ext4 -d fills the filesystem from the tree: no loop mount, no root-only mount.
            subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", str(tree), str(raw)], check=True)
            subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(staged.disk)], check=True)
        shutil.rmtree(found.root, ignore_errors=True)
        staged.root.rename(found.root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return found
