"""Reaching a lab host, container or VM alike: the lab's key, its ssh_config, and commands over SSH."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from . import config
from .docker import docker


def run_on(lab: config.Lab, hostname: str, command: str, what: str, stdin: str = "") -> str:
    """Run `command` on a lab host over SSH, `stdin` its input: its output, or SystemExit saying it
    could not `what`."""
    result = subprocess.run(ssh_command(lab, hostname, command), capture_output=True, text=True, input=stdin)
    if result.returncode != 0:
        raise SystemExit(f"{hostname}: could not {what}: {result.stderr.strip()[-1500:]}")
    return result.stdout.strip()


def ensure_ssh_key(lab: config.Lab) -> None:
    if not lab.ssh_key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{lab.name}",
                        "-f", str(lab.ssh_key)], check=True)


def ssh_command(lab: config.Lab, hostname: str, *command: str) -> list[str]:
    return ["ssh", "-F", str(lab.ssh_config_path), "-o", "ConnectTimeout=3", hostname, *command]


def ssh_ok(lab: config.Lab, hostname: str) -> bool:
    return subprocess.run(
        ssh_command(lab, hostname, "true"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    ).returncode == 0


def wait_for_ssh(lab: config.Lab, hostnames: list[str], timeout: float = 120,
                 logs: Callable[[str], str] | None = None) -> None:
    def wait(hostname: str) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ssh_ok(lab, hostname):
                return None
            time.sleep(0.5)
        return hostname

    with ThreadPoolExecutor(max_workers=16) as pool:
        late = [h for h in pool.map(wait, hostnames) if h]
    if late:
        tail = logs(late[0]) if logs else docker("logs", "--tail", "20", lab.container_name(late[0]), check=False)
        raise SystemExit(f"no SSH after {timeout:.0f} s on: {', '.join(late)}\n{tail}")


def close_ssh_master(lab: config.Lab, hostname: str) -> None:
    subprocess.run(["ssh", "-F", str(lab.ssh_config_path), "-O", "exit", hostname],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
