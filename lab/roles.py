"""What a lab host's role makes it before regdeploy runs (lab/config.py's ROLES), container or VM alike."""

from __future__ import annotations

import shlex
from pathlib import Path

from . import config
from .ssh import run_on


# What each role's host is before regdeploy runs: installed from the image's apt cache (offline).
ROLE_SETUP = {
    "containerd-store": "mkdir -p /etc/docker && printf '%s\\n' "
                        "'{\"features\": {\"containerd-snapshotter\": true}}' > /etc/docker/daemon.json",
    "containerd": "DEBIAN_FRONTEND=noninteractive apt-get install -y -q containerd >/dev/null "
                  "&& systemctl enable --now containerd >/dev/null 2>&1",
    "podman": "DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman >/dev/null",
}


def prepare_role(lab: config.Lab, hostname: str, spec: config.HostSpec) -> None:
    if spec.role == "ceph":
        prepare_store(lab, hostname)
        return
    run_on(lab, hostname, ROLE_SETUP[spec.role], f"prepare it as {spec}")


STORE_SCRIPT = Path(__file__).with_name("ceph-store.sh")


def prepare_store(lab: config.Lab, hostname: str) -> None:
    """Ceph with RGW on the store host (lab/ceph-store.sh): the bucket and key the inventory names."""
    remote = f"sh -c {shlex.quote(STORE_SCRIPT.read_text())} store {config.STORE_ACCESS_KEY} {config.STORE_BUCKET} " \
             f"{config.STORE_PORT}"
    # The secret goes on stdin, never on a command line.
    run_on(lab, hostname, remote, "make the Ceph store", stdin=lab.s3_secret_path.read_text().splitlines()[0] + "\n")
