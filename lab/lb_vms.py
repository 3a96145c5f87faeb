"""The load balancers of a lab with replicas as virtual machines (`python -m lab up --replicas N
--lb-vms`), for registry_lb_mode=ipvs: IPVS lives in the kernel, and this controller's kernel has none
(no ip_vs module), so the container hosts, which share it, cannot carry it. Debian's cloud kernel in
the VM tier's image does.

    replicas, store, clients (containers) ─┐
                                            ├─ the lab's Docker network bridge (br-<id>) ─ tap ─ lb1 (VM)
                                            └─ ...                                        ─ tap ─ lb2 (VM)

IPVS direct routing forwards a frame to a replica's MAC address: the load balancers share the
replicas' Ethernet segment, here as a tap each on the Docker network's own bridge, at the addresses
the lab gives lb1 and lb2. Docker's gateway (.1) is theirs too: through its NAT they reach the
package mirror, as the containers do. Their state (qemu pid files, overlays, taps) is kept apart from
a VM lab's (`lab.json`): the lab stays a container lab, and `down` removes them first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from . import config, docker, ssh, vm, vm_image
from .log import step

STATE_FILE = "lb-vms.json"


def run_dir(lab: config.Lab) -> Path:
    return lab.state_dir / "lb-vms"


def load_state(lab: config.Lab) -> dict:
    try:
        return json.loads((run_dir(lab) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _save_state(lab: config.Lab, state: dict) -> None:
    path = run_dir(lab) / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_text(json.dumps(state, indent=1))
    path.with_suffix(".tmp").replace(path)


def hostnames(lab: config.Lab) -> list[str]:
    """The lab's load-balancer VMs, running or powered off."""
    return list(load_state(lab).get("hosts", {}))


def running(lab: config.Lab) -> list[str]:
    return [h for h in hostnames(lab) if _qemu_pid(lab, h)]


def network_bridge(lab: config.Lab) -> str:
    """The Linux bridge of the lab's Docker network (Docker names it br-<first 12 of its id>)."""
    found = docker.inspect("network", lab.network)
    if found is None:
        raise SystemExit(f"lab {lab.name} has no Docker network {lab.network}")
    return found.get("Options", {}).get("com.docker.network.bridge.name") or f"br-{found['Id'][:12]}"


def _qemu_pid(lab: config.Lab, hostname: str) -> int | None:
    return vm.qemu_pid(run_dir(lab), hostname)


def _nameservers() -> list[str]:
    lines = Path("/etc/resolv.conf").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]


def up(lab: config.Lab, hosts: dict[str, int], names: dict[str, str]) -> None:
    """Boot each of `hosts` (hostname: its lab index) not running yet, on the lab's Docker network, and
    wait until each answers SSH; then give each the lab's `names` (hostname: address) and the
    controller's resolvers."""
    image = vm_image.build(lab, config.DEBIAN_SUITE)
    accel = vm.choose_accel(lab, image)
    state = load_state(lab) or {"lab": lab.name, "hosts": {}, "taps": []}
    state["names"] = names
    bridge = network_bridge(lab)
    ssh.ensure_ssh_key(lab)
    public_key = Path(f"{lab.ssh_key}.pub").read_text()
    booted = []
    with step(f"boot {', '.join(hosts)} as VMs ({accel.name.upper()}) on {bridge}"):
        for hostname, index in hosts.items():
            if _qemu_pid(lab, hostname):
                continue
            state["hosts"][hostname] = {"index": index}
            tap = vm.tap_name(lab, index)
            if tap not in state["taps"]:
                state["taps"].append(tap)
            _save_state(lab, state)
            if not vm._link_exists(tap):
                vm._ip("tuntap", "add", "dev", tap, "mode", "tap")
            vm._ip("link", "set", tap, "master", bridge, "up")
            overlay = run_dir(lab) / f"{hostname}.qcow2"
            if not overlay.exists():  # a powered-off VM keeps its disk (and what it was given below)
                booted.append(hostname)
                subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "qcow2",
                                str(overlay)], check=True)
            cmdline = vm.kernel_cmdline(hostname, lab.address(index), f"{lab.subnet_prefix}.1", public_key)
            subprocess.run(vm.qemu_command(accel, image, overlay, cmdline, tap, vm.mac_address(lab, index),
                                           run_dir(lab), hostname), check=True)
    with step(f"wait for SSH on {', '.join(hosts)}"):
        ssh.wait_for_ssh(lab, list(hosts), timeout=vm.SSH_TIMEOUT, logs=lambda h: console_tail(lab, h))
    resolv = "".join(f"nameserver {n}\n" for n in _nameservers())
    for hostname in booted:
        ssh.run_on(lab, hostname, "cat > /etc/resolv.conf", "give the VM the controller's resolvers", stdin=resolv)
        ssh.run_on(lab, hostname, "cat >> /etc/hosts",
                   "give the VM the lab's names",
                   stdin="".join(f"{address} {name}\n" for name, address in names.items()))


def start(lab: config.Lab, hostname: str) -> None:
    """Boot a powered-off load-balancer VM again, on its disk, and wait for it."""
    state = load_state(lab)
    up(lab, {hostname: state["hosts"][hostname]["index"]}, state["names"])


def console_tail(lab: config.Lab, hostname: str, lines: int = 20) -> str:
    path = run_dir(lab) / f"{hostname}.console.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def power_off(lab: config.Lab, hostname: str) -> None:
    """The VM dies at once, as at a power cut: its qemu is killed."""
    pid = _qemu_pid(lab, hostname)
    if pid:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _qemu_pid(lab, hostname) and time.monotonic() < deadline:
            time.sleep(0.1)


def down(lab: config.Lab) -> list[str]:
    """Stop the lab's load-balancer VMs and remove their taps and disks."""
    state = load_state(lab)
    if not state:
        return []
    removed = []
    for hostname in state.get("hosts", {}):
        power_off(lab, hostname)
        removed.append(f"vm {hostname}")
    for tap in state.get("taps", []):
        if vm._link_exists(tap):
            vm._ip("link", "del", tap)
            removed.append(f"tap {tap}")
    for path in run_dir(lab).iterdir():
        path.unlink()
    run_dir(lab).rmdir()
    return removed
