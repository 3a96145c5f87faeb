"""Which packages a host needs for Docker (distro docker.io, Docker's apt repository, or nothing), and
what goes in with their install: decisions from the settings and the host's state, no pyinfra."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from . import access, daemon_config, load_balancer, retention, runtimes
from .host_state import HostState
from .rendering import render
from .settings import Settings

PACKAGES = {
    "distro": ["docker.io"],
    "docker-ce": ["docker-ce", "docker-ce-cli", "containerd.io"],
    "none": [],
}
# From Debian 13 on, docker.io only recommends the `docker` command (runtimes.needs_docker_cli).
DOCKER_CLI = "docker-cli"
APPARMOR = "apparmor"

# The registry server's readiness check and catalog fact use curl (with docker_install_source
# "none", nothing is installed: the server must have curl already).
SERVER_PACKAGES = ["curl"]


def packages_for(settings: Settings, os_release: dict[str, str] | None = None,
                 apparmor: bool | None = None) -> list[str]:
    """What to install. `os_release` and `apparmor` (the fact's: the kernel enforces AppArmor): Debian
    13 and later need docker-cli for the `docker` command beside docker.io; a kernel with AppArmor
    needs apparmor_parser, or Docker 20.10 refuses to run any container ("the docker-default profile
    could not be loaded"): docker.io only recommends apparmor, so hosts that skip recommends lack it
    (found on the VM tier: Debian's cloud kernel enables AppArmor). None: everything that might be
    needed (what to ask dpkg)."""
    packages = list(PACKAGES[settings.docker_install_source])
    if settings.docker_install_source == "distro" and (os_release is None or runtimes.needs_docker_cli(os_release)):
        packages.append(DOCKER_CLI)
    if packages and apparmor is not False:
        packages.append(APPARMOR)
    return packages + SERVER_PACKAGES if packages and settings.is_server else packages


def packages_to_check(settings: Settings) -> list[str]:
    """What the DockerHostState fact asks dpkg about: the packages to install and, for docker-ce,
    Debian's docker.io (a host that runs it is not switched under its containers); the load
    balancer's on the registry_lb host (which gets no Docker unless it also uses the registry)."""
    docker = packages_for(settings) + (["docker.io"] if settings.docker_install_source == "docker-ce" else []) \
        if settings.uses_registry else []
    return docker + (list(load_balancer.packages(settings)) if settings.is_lb else []) + \
        (list(access.TOKEN_PACKAGES) if settings.is_server and settings.registry_access else []) + \
        (list(retention.PACKAGES) if settings.is_server and settings.registry_gc_schedule and settings.registry_retention
         else [])


def missing_packages(settings: Settings, state: HostState, wanted: list[str] | None = None) -> list[str]:
    """The packages this host still needs (from the DockerHostState fact read before any change);
    `wanted`: packages_for() of this host, if already known."""
    wanted = packages_for(settings, state.os, state.apparmor) if wanted is None else wanted
    return [name for name in wanted if not state.packages.get(name)]


def installs_engine(settings: Settings, state: HostState) -> bool:
    """Whether this run installs Docker's engine package (docker.io or docker-ce) on the host."""
    engine = PACKAGES[settings.docker_install_source][:1]
    return bool(engine) and not state.packages.get(engine[0])


@dataclass(frozen=True)
class Preload:
    """A file for the host to receive while the fleet installs Docker, and the command that uses it once
    Docker runs (the registry server's image archive and its `docker load`)."""
    src: str
    dest: str
    sha256: str  # what the copy on the host must hash to: checked by the upload, before it is moved
    then: str  # for a copy sent some other way (files.put): check `dest`, then use it
    load: str  # use `dest`, once the upload has checked it
    what: str  # for the log: "registry:2 from /var/cache/regdeploy/registry-2.tar"


@dataclass(frozen=True)
class DaemonJsonWithInstall:
    """daemon.json going in with the install (daemon_config.write_before_install): `before` writes it
    before apt, `after` starts Docker if the package did not and confirms dockerd took it."""
    before: str
    after: str


# Debian's docker.io starts and enables Docker itself; docker-ce's packages may not (policy-rc.d).
# Asked first: `systemctl enable` runs Debian's SysV sync script, half a second even when enabled.
START_DOCKER = "{ systemctl is-active -q docker && systemctl is-enabled -q docker; } || systemctl enable --now docker"


def with_install(settings: Settings, state: HostState, plan: daemon_config.DaemonJsonPlan,
                 installs_engine: bool) -> DaemonJsonWithInstall | None:
    """The scripts that put daemon.json in with Docker's install, on a host where it goes in before the
    install (daemon_config.write_before_install); None elsewhere."""
    if not daemon_config.write_before_install(state, plan, installs_engine):
        return None
    path = settings.docker_daemon_json
    return DaemonJsonWithInstall(
        before=render("daemon-json-before-install.sh.j2", path=path, content=plan.content),
        after=render("daemon-json-after-install.sh.j2", path=path, action="start", start=START_DOCKER,
                     sha256=hashlib.sha256(plan.content.encode()).hexdigest(), registry=settings.registry_address,
                     secure=settings.registry_tls, insecure_registries_format=daemon_config.INSECURE_REGISTRIES_FORMAT))
