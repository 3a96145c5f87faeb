"""Thin wrapper over the controller's docker CLI: the lab drives the engine the way an operator would."""

from __future__ import annotations

import json
import shutil
import subprocess

from . import config

NO_ENGINE = (
    "No Docker engine answers on this controller. Install and start one, e.g. on Debian 12:\n"
    "  apt-get install -y docker.io && (dockerd >/var/log/dockerd.log 2>&1 &)\n"
    "or simply run lab/bootstrap.sh, which does both."
)


def docker(*args: str, stdin=None, check: bool = True, capture: bool = True) -> str:
    if shutil.which("docker") is None:
        raise SystemExit(NO_ENGINE)
    result = subprocess.run(
        ["docker", *args], stdin=stdin, text=True,
        stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None,
    )
    if check and result.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])} failed: {(result.stderr or '').strip()}")
    return (result.stdout or "").strip()


def engine_running() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ).returncode == 0


def require_engine() -> None:
    if not engine_running():
        raise SystemExit(NO_ENGINE)


def image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def inspect(kind: str, name: str) -> dict | None:
    found = json.loads(docker(kind, "inspect", name, check=False) or "[]")
    return found[0] if found else None


def labelled(kind: str, label: str) -> list[str]:
    """Names of containers/networks/volumes carrying `label`."""
    if kind == "container":
        out = docker("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
    else:
        out = docker(kind, "ls", "--filter", f"label={label}", "--format", "{{.Name}}")
    return out.split()


def container_hosts(lab: config.Lab) -> list[str]:
    """Hostnames of this lab's host containers, server first."""
    names = labelled("container", f"{config.LAB_LABEL}={lab.name}")
    hosts = [n[len(lab.name) + 1:] for n in names if n.startswith(lab.name + "-")]
    return sorted(hosts, key=config.host_order)
