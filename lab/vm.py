"""The lab's VM tier (`python -m lab up --vm`): real virtual machines with their own kernel, booted
by qemu from vm_image's disk, each on a copy-on-write overlay, on a bridge the lab creates.

    controller 172.30.N.1 ── bridge rdl<hash> ── tap rdl<hash>t0 ── registry (172.30.N.10)
                                              └─ tap rdl<hash>t1 ── client1  (172.30.N.11) ...

The VMs reach each other and the controller, nothing else (no NAT, no DNS): Docker's packages come
from the image's apt cache, as on the container hosts. The outputs are the container tier's (an
inventory, a hosts list, an ssh_config), so the deploy and the verify suite run on VMs unchanged.
`reboot` is a real reboot; `down` removes the VMs, overlays, taps, bridge and forwarding rule this
lab made (listed in its state file before each is created) and nothing else.

Acceleration: KVM when it boots a stock kernel, else TCG. A short probe decides (on this kind of
machine /dev/kvm exists but stock kernels do not boot on it) and its verdict is kept per controller
boot.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import config, docker, inventory, roles, ssh, vm_image
from .log import step

MEMORY_MB = 1536
CPUS = 2
# Boot to SSH took 35-45 s per VM under TCG on a 2-core controller; several VMs boot at once.
SSH_TIMEOUT = 600
PROBE_SECONDS = 20
# The kernel prints this when it starts the initramfs: a kernel that got there boots.
BOOTED_MARKER = "Run /init as init process"
STATE_FILE = "lab.json"


@dataclass(frozen=True)
class Accel:
    name: str  # kvm | tcg
    cpu: str
    reason: str

    def qemu_args(self) -> list[str]:
        accel = "kvm" if self.name == "kvm" else "tcg,thread=multi"
        return ["-accel", accel, "-cpu", self.cpu]


TCG = ("tcg", "max")
KVM = ("kvm", "host")


# --- names and addresses (pure) -------------------------------------------------------------------

def vm_lab(lab: config.Lab) -> config.Lab:
    """The same lab on the VM tier's /24 (172.30.x, the container tier uses 172.29.x), unless
    $REGDEPLOY_LAB_SUBNET names one."""
    if os.environ.get("REGDEPLOY_LAB_SUBNET"):
        return lab
    return dataclasses.replace(lab, subnet_prefix=lab.subnet_prefix.replace("172.29.", "172.30.", 1))


def bridge_name(lab: config.Lab) -> str:
    # Interface names hold 15 characters: a hash of the lab's name keeps labs apart.
    return f"rdl{zlib.crc32(lab.name.encode()) & 0xffffff:06x}"


def tap_name(lab: config.Lab, index: int) -> str:
    return f"{bridge_name(lab)}t{index}"


def mac_address(lab: config.Lab, index: int) -> str:
    digest = zlib.crc32(lab.name.encode())
    return f"52:54:{digest >> 24 & 0xff:02x}:{digest >> 16 & 0xff:02x}:{digest >> 8 & 0xff:02x}:{index:02x}"


def kernel_cmdline(hostname: str, address: str, gateway: str, public_key: str) -> str:
    """Root on the virtio disk, the serial console, a static address (systemd-network-generator reads
    `ip=`), the hostname, and the lab's SSH key (base64, read by lab-authorized-key.service)."""
    key = base64.b64encode(public_key.strip().encode()).decode()
    return (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 systemd.hostname={hostname} "
            f"ip={address}::{gateway}:255.255.255.0:{hostname}:eth0:off lab.key={key}")


def qemu_command(accel: Accel, image: vm_image.VmImage, overlay: Path, cmdline: str, tap: str, mac: str,
                 run_dir: Path, hostname: str) -> list[str]:
    return [
        "qemu-system-x86_64", *accel.qemu_args(), "-m", str(MEMORY_MB), "-smp", str(CPUS),
        "-display", "none", "-no-user-config", "-nodefaults",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline,
        # cache=unsafe: the overlay is thrown away with the lab; a guest reboot keeps qemu's cache.
        "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
        "-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no",
        # romfile= : no iPXE option ROM needed (direct kernel boot), so ipxe-qemu is not required.
        "-device", f"virtio-net-pci,netdev=net0,mac={mac},romfile=",
        "-device", "virtio-rng-pci",
        "-serial", f"file:{run_dir / (hostname + '.console.log')}",
        "-pidfile", str(run_dir / f"{hostname}.pid"), "-daemonize",
    ]


def probe_verdict(console: str, returncode: int | None, stderr: str) -> tuple[bool, str]:
    """Did the KVM probe boot? `returncode` is None when the probe was still running at its deadline."""
    if BOOTED_MARKER in console:
        return True, "a stock kernel booted under KVM"
    if returncode is not None:
        last = (stderr.strip().splitlines() or ["no message"])[-1]
        return False, f"qemu with KVM exited ({returncode}): {last}"
    return False, f"a stock kernel printed nothing under KVM within {PROBE_SECONDS} s"


# --- acceleration -------------------------------------------------------------------------------

def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def choose_accel(lab: config.Lab, image: vm_image.VmImage) -> Accel:
    """KVM if the probe boots the image's kernel with it, else TCG; kept for this controller boot."""
    cache = lab.images_dir / "vm-accel.json"
    key = {"boot_id": _boot_id(), "kernel": str(image.kernel), "kernel_mtime": image.kernel.stat().st_mtime}
    try:
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return Accel(**cached["accel"])
    except (OSError, ValueError, TypeError):
        pass
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        accel = Accel(*TCG, "no usable /dev/kvm")
    else:
        with step("probe KVM: boot the cloud kernel once"):
            booted, reason = _probe_kvm(image)
        accel = Accel(*KVM, reason) if booted else Accel(*TCG, reason)
    cache.write_text(json.dumps({"key": key, "accel": dataclasses.asdict(accel)}))
    return accel


def _probe_kvm(image: vm_image.VmImage) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as work:
        console = Path(work, "console")
        probe = subprocess.Popen(
            ["qemu-system-x86_64", *Accel(*KVM, "").qemu_args(), "-m", "512", "-display", "none",
             "-no-user-config", "-nodefaults", "-no-reboot", "-kernel", str(image.kernel),
             "-initrd", str(image.initrd), "-append", "console=ttyS0 panic=-1",
             "-serial", f"file:{console}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + PROBE_SECONDS
        while time.monotonic() < deadline and probe.poll() is None:
            if console.exists() and BOOTED_MARKER in console.read_text(errors="replace"):
                break
            time.sleep(0.2)
        returncode = probe.poll()
        if returncode is None:
            probe.kill()
        _, stderr = probe.communicate()
        text = console.read_text(errors="replace") if console.exists() else ""
        return probe_verdict(text, returncode, stderr)


# --- state --------------------------------------------------------------------------------------

def run_dir(lab: config.Lab) -> Path:
    return lab.state_dir / "vm"


def load_state(lab: config.Lab) -> dict | None:
    try:
        return json.loads((run_dir(lab) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _save_state(lab: config.Lab, state: dict) -> None:
    path = run_dir(lab) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def is_vm_lab(lab: config.Lab) -> bool:
    return load_state(lab) is not None


def running_hosts(lab: config.Lab) -> list[str]:
    state = load_state(lab) or {}
    hosts = state.get("hosts", {})
    return sorted((h for h in hosts if _qemu_pid(lab, h)), key=lambda h: hosts[h]["index"])


def _qemu_pid(lab: config.Lab, hostname: str) -> int | None:
    return qemu_pid(run_dir(lab), hostname)


def qemu_pid(directory: Path, hostname: str) -> int | None:
    """The pid of this host's qemu, if it still runs (the pid file in `directory`, its process checked by
    its overlay there)."""
    try:
        pid = int((directory / f"{hostname}.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if str(directory / f"{hostname}.qcow2") in cmdline else None


# --- network ------------------------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _link_exists(name: str) -> bool:
    return _ip("link", "show", name, check=False).returncode == 0


def _forward_rule(lab: config.Lab) -> list[str]:
    # Docker sets FORWARD's policy to DROP and br_netfilter sends bridged frames through it: without
    # this rule the VMs reach the controller but not each other.
    bridge = bridge_name(lab)
    return ["FORWARD", "-i", bridge, "-o", bridge, "-m", "comment", "--comment", f"{config.LAB_LABEL}={lab.name}",
            "-j", "ACCEPT"]


def _ensure_network(lab: config.Lab, state: dict) -> None:
    bridge = bridge_name(lab)
    if not _link_exists(bridge):
        state["bridge"] = bridge
        _save_state(lab, state)
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{lab.subnet_prefix}.1/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
    rule = _forward_rule(lab)
    if subprocess.run(["iptables", "-w", "-C", *rule], capture_output=True).returncode != 0:
        state["forward_rule"] = rule
        _save_state(lab, state)
        subprocess.run(["iptables", "-w", "-I", *rule[:1], "1", *rule[1:]], check=True)


def _ensure_tap(lab: config.Lab, state: dict, index: int) -> str:
    tap = tap_name(lab, index)
    if not _link_exists(tap):
        state.setdefault("taps", [])
        if tap not in state["taps"]:
            state["taps"].append(tap)
        _save_state(lab, state)
        _ip("tuntap", "add", "dev", tap, "mode", "tap")
        _ip("link", "set", tap, "master", bridge_name(lab), "up")
    return tap


# --- up, down, reboot -----------------------------------------------------------------------------

def up(lab: config.Lab, clients: int = 1, rebuild: bool = False, os_spec: str = "") -> list[str]:
    """Boot the lab's VMs (or add VMs up to `clients` clients) and wait until every one answers SSH."""
    lab = vm_lab(lab)
    if not 0 <= clients <= 40:
        raise SystemExit("--clients must be between 0 and 40 for VMs")
    if docker.container_hosts(lab):
        raise SystemExit(f"lab {lab.name} runs as containers: `python -m lab --name {lab.name} down` first")
    wanted = config.hostnames(clients)
    state = load_state(lab) or {"lab": lab.name, "subnet": lab.subnet, "hosts": {}}
    try:
        specs = dict(zip(wanted, config.host_specs(os_spec, len(wanted))))
    except ValueError as exc:
        raise SystemExit(f"--os: {exc}") from None
    for hostname, known in state["hosts"].items():
        if hostname in specs:
            specs[hostname] = config.HostSpec.parse(known["spec"])
    images = {suite: vm_image.build(lab, suite, rebuild=rebuild)
              for suite in dict.fromkeys(s.suite for s in specs.values())}
    accel = choose_accel(lab, images[config.DEBIAN_SUITE] if config.DEBIAN_SUITE in images
                         else next(iter(images.values())))
    print(f"lab: VMs run on {accel.name.upper()} ({accel.reason})", file=sys.stderr)
    state["accel"] = dataclasses.asdict(accel)
    run_dir(lab).mkdir(parents=True, exist_ok=True)
    ssh.ensure_ssh_key(lab)
    _ensure_network(lab, state)
    public_key = Path(f"{lab.ssh_key}.pub").read_text()
    booted = []
    with step(f"boot {len(wanted)} VMs"):
        for index, hostname in enumerate(wanted):
            if _qemu_pid(lab, hostname):
                continue
            spec = specs[hostname]
            state["hosts"][hostname] = {"index": index, "spec": str(spec)}
            tap = _ensure_tap(lab, state, index)
            overlay = run_dir(lab) / f"{hostname}.qcow2"
            if not overlay.exists():  # a stopped VM keeps its disk
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(images[spec.suite].disk),
                                "-F", "qcow2", str(overlay)], check=True)
            _save_state(lab, state)
            cmdline = kernel_cmdline(hostname, lab.address(index), f"{lab.subnet_prefix}.1", public_key)
            subprocess.run(qemu_command(accel, images[spec.suite], overlay, cmdline, tap, mac_address(lab, index),
                                        run_dir(lab), hostname), check=True)
            booted.append(hostname)
    inventory.write(lab, wanted, specs)
    with step("wait for SSH on every VM"):
        ssh.wait_for_ssh(lab, wanted, timeout=SSH_TIMEOUT, logs=lambda h: console_tail(lab, h))
    with step("give every VM the lab's names"):
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda h: ssh.run_on(lab, h, hosts_block_script(lab, wanted),
                                                 "write the lab's names into /etc/hosts"), wanted))
    prepare = [h for h in booted if specs[h].role != "docker"]
    if prepare:
        with step(f"make {', '.join(f'{h} ({specs[h]})' for h in prepare)} what they play"):
            for hostname in prepare:
                roles.prepare_role(lab, hostname, specs[hostname])
    return wanted


HOSTS_BEGIN, HOSTS_END = "# regdeploy lab hosts: begin", "# regdeploy lab hosts: end"


def hosts_block_script(lab: config.Lab, hostnames: list[str], path: str = "/etc/hosts") -> str:
    """Replace the lab's block in /etc/hosts with every lab host's name and address. The container
    tier resolves names through Docker's embedded DNS; a LAN's DNS would do it for real machines."""
    lines = [HOSTS_BEGIN, *(f"{lab.address(i)} {h}" for i, h in enumerate(hostnames)), HOSTS_END]
    return (f"touch {path} && sed -i '/^{HOSTS_BEGIN}$/,/^{HOSTS_END}$/d' {path} && printf '%s\\n' "
            + " ".join(shlex.quote(line) for line in lines) + f" >> {path}")


def console_tail(lab: config.Lab, hostname: str, lines: int = 20) -> str:
    path = run_dir(vm_lab(lab)) / f"{hostname}.console.log"
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def boot_id(lab: config.Lab, hostname: str) -> str:
    return subprocess.run(ssh.ssh_command(lab, hostname, "cat /proc/sys/kernel/random/boot_id"),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, check=True).stdout.strip()


def reboot(lab: config.Lab, hostname: str) -> None:
    """A real reboot: the guest's `systemctl reboot`, qemu resets the machine, the kernel boots again;
    back when SSH answers with a new boot id."""
    before = boot_id(lab, hostname)
    subprocess.run(ssh.ssh_command(lab, hostname, "systemctl reboot"), capture_output=True,
                   stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + SSH_TIMEOUT
    while time.monotonic() < deadline:
        # The shared connection died with the old boot: never let a stale master answer.
        ssh.close_ssh_master(lab, hostname)
        if ssh.ssh_ok(lab, hostname):
            try:
                if boot_id(lab, hostname) != before:
                    return
            except subprocess.CalledProcessError:
                pass
        time.sleep(2)
    raise SystemExit(f"{hostname} did not come back within {SSH_TIMEOUT} s:\n{console_tail(lab, hostname)}")


def down(lab: config.Lab) -> list[str]:
    """Stop this lab's VMs and remove what its state file lists (overlays, taps, bridge, rule)."""
    lab = vm_lab(lab)
    state = load_state(lab)
    if state is None:
        return []
    removed = []
    for hostname in state.get("hosts", {}):
        pid = _qemu_pid(lab, hostname)
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _qemu_pid(lab, hostname) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _qemu_pid(lab, hostname):
                os.kill(pid, signal.SIGKILL)
        removed.append(f"vm {hostname}")
    for tap in state.get("taps", []):
        if _link_exists(tap):
            _ip("link", "del", tap)
            removed.append(f"tap {tap}")
    bridge = state.get("bridge")
    if bridge and _link_exists(bridge):
        _ip("link", "del", bridge)
        removed.append(f"bridge {bridge}")
    rule = state.get("forward_rule")
    if rule and subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
        removed.append("forwarding rule")
    for path in run_dir(lab).iterdir():
        path.unlink()
    run_dir(lab).rmdir()
    return removed
