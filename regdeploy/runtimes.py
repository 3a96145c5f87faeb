"""Which container runtimes of a host regdeploy makes trust the registry: Docker, containerd alone
(Kubernetes and CI nodes), Podman (and CRI-O, which reads the same files).

`client_runtimes` names them; empty means detect from what the host has. The decision is a pure
function of the setting and of the tools the host's DockerHostState fact found, so the deploy and
the testinfra suite decide alike.
"""

from __future__ import annotations

import re

RUNTIMES = ("docker", "containerd", "podman")


def resolve(requested: tuple[str, ...], docker_install_source: str, tools: set[str]) -> tuple[str, ...]:
    """The runtimes to configure. Detected: Docker when regdeploy installs it or it is there; containerd
    only without Docker (every Docker host has containerd underneath, and it is Docker's: its config
    stays untouched there); Podman when it is there."""
    if requested:
        return tuple(requested)
    found = []
    if docker_install_source != "none" or "dockerd" in tools:
        found.append("docker")
    if "containerd" in tools and "docker" not in found:
        found.append("containerd")
    if "podman" in tools:
        found.append("podman")
    return tuple(found)


def needs_docker_cli(os_release: dict[str, str]) -> bool:
    """Whether Debian's docker.io comes without the `docker` command here: from Debian 13 (trixie) on,
    including testing and sid (no VERSION_ID), it only recommends the separate docker-cli package."""
    if os_release.get("ID") != "debian":
        return False
    version = os_release.get("VERSION_ID", "")
    major = re.match(r"\d+", version)
    return not version or (major is not None and int(major.group()) >= 13)


def major_version(package_version: str | None) -> int | None:
    """2 for "2.1.4~ds1-1", 1 for "1.7.24~ds1-6+b2"; the epoch is not the version."""
    found = re.match(r"(?:\d+:)?(\d+)\.", package_version or "")
    return int(found.group(1)) if found else None
