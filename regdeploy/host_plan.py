"""What one host gets, decided once from its settings and its state, before any operation: which
runtimes trust the registry, what its daemon.json becomes and whether it goes in with Docker's
install, what rides on that install, or why the host is refused. tasks/ turns the plan into
operations; nothing here touches a host (no pyinfra)."""

from __future__ import annotations

from dataclasses import dataclass

from . import daemon_config, runtimes
from .daemon_config import DaemonJsonPlan
from .docker_packages import DaemonJsonWithInstall, Preload, installs_engine, with_install
from .host_state import HostState
from .registry_run import image_preload
from .settings import Settings


class HostRefused(Exception):
    """The host must not be touched; the message names it and says what to do. Raised before any
    operation runs on it."""


@dataclass(frozen=True)
class HostPlan:
    runtimes: tuple[str, ...]  # the runtimes that must trust the registry (none on a load balancer only)
    waited: int = 0  # seconds the fact waited for another run's deploy lock
    daemon_json: DaemonJsonPlan | None = None  # Docker hosts: what daemon.json becomes
    # On a fresh Docker host daemon.json goes in before the install, as the manual does it: no reload after.
    with_install: DaemonJsonWithInstall | None = None
    # A server installing Docker receives its image archive while the clients install theirs.
    preload: Preload | None = None

    @property
    def docker(self) -> bool:
        return "docker" in self.runtimes


def plan_host(settings: Settings, state: HostState) -> HostPlan:
    """The plan for the host `settings` describe, whose DockerHostState fact is `state`; raises
    HostRefused for a host regdeploy must leave as it is."""
    name = settings.host_name
    lock = state.lock
    if lock and not lock.held:
        raise HostRefused(f"host {name!r}: another regdeploy run holds this host's deploy lock ({lock.holder}); "
                          f"waited {lock.waited} s (deploy_lock_timeout). Nothing was changed: run again once it "
                          "has finished.")
    host_runtimes = runtimes.resolve(settings.client_runtimes, settings.docker_install_source, state.tools) \
        if settings.uses_registry else ()
    if settings.is_server and "docker" not in host_runtimes:
        raise HostRefused(f"host {name!r} is the registry server: it needs Docker (client_runtimes="
                          f"{list(host_runtimes)}, docker_install_source={settings.docker_install_source!r}); "
                          "nothing was changed")
    if settings.uses_registry and not host_runtimes:
        raise HostRefused(f"host {name!r} has no container runtime regdeploy knows (Docker, containerd, Podman) "
                          "and docker_install_source is 'none': install one, or let regdeploy install Docker; "
                          "nothing was changed")
    waited = lock.waited if lock else 0
    if "docker" not in host_runtimes:
        return HostPlan(runtimes=tuple(host_runtimes), waited=waited)
    try:
        daemon_json = daemon_config.plan_daemon_json(
            state, settings.docker_daemon_json, settings.registry_address, settings.docker_mirrors, name,
            secure=settings.registry_tls, drop_mirrors=settings.stale_mirrors)
    except daemon_config.DaemonConfigError as exc:
        raise HostRefused(str(exc)) from None
    return HostPlan(
        runtimes=tuple(host_runtimes), waited=waited, daemon_json=daemon_json,
        with_install=with_install(settings, state, daemon_json, installs_engine(settings, state)),
        preload=image_preload(settings, state.registry) if settings.is_server else None,
    )
