"""Make a host's Docker trust the registry: its CA in Docker's certs.d (TLS modes), daemon.json
merged (never overwritten) and applied with the least disruption.

The decision (what the file becomes, reload or restart, or a refusal) is daemon_config.plan_daemon_json,
a pure function of the host's DockerHostState fact; this turns it into operations.
"""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import server

from regdeploy import daemon_config, registry_files
from regdeploy.rendering import render
from regdeploy.settings import Settings, cache_settings
from .docker_engine import START_DOCKER, DaemonJsonWithInstall
from .registry_ca import put_registry_ca


def plan_trust(settings: Settings, state: dict) -> daemon_config.DaemonJsonPlan:
    """What the host's daemon.json becomes (daemon_config.plan_daemon_json); `state` is its DockerHostState
    fact. Raises DeployError, before any operation, for a file regdeploy must not touch."""
    try:
        return daemon_config.plan_daemon_json(state, settings.docker_daemon_json, settings.registry_address,
                                              settings.docker_mirrors, host.name, secure=settings.registry_tls,
                                              drop_mirrors=settings.stale_mirrors)
    except daemon_config.DaemonConfigError as exc:
        raise DeployError(str(exc)) from None


def with_install(settings: Settings, state: dict, plan: daemon_config.DaemonJsonPlan,
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


@deploy("Trust the registry in Docker's daemon.json")
def trust_registry(settings: Settings, state: dict, plan: daemon_config.DaemonJsonPlan,
                   with_install: bool = False) -> None:
    """`state` is the host's DockerHostState fact, `plan` its plan_trust(); `with_install`: the file went
    in with Docker's install (with_install())."""
    path = settings.docker_daemon_json
    # First the CA: once dockerd stops treating the registry as insecure, it must already verify it.
    install_registry_ca(settings, state)
    if plan.action is None:
        host.noop(plan.reason)
        return
    # Said before anything runs, --dry included: what the file gets, key by key, and why.
    if with_install:
        host.log(f"Will write {path} before installing Docker, which starts with it ({plan.reason}):")
    else:
        # The apply script starts a Docker that is not running (a fresh install) instead.
        verb = plan.action if state["active"] else "start"
        host.log(f"Will modify {path} and {verb} Docker ({plan.reason}):")
    for line in plan.changes or ("(no key changes: the file stays as it is)",):
        host.log(f"  {line}")
    if with_install:
        host.noop(f"{path} goes in with Docker's install: written before it, confirmed once Docker runs")
        return
    done = (f"confirm it no longer treats {settings.registry_address} as insecure" if settings.registry_tls
            else f"confirm it trusts {settings.registry_address}")
    server.shell(
        name=f"Write the merged {path}, {verb} Docker and {done}",
        commands=[render("apply-daemon-json.sh.j2", path=path, action=plan.action, validate=plan.validate,
                         registry=settings.registry_address, content=plan.content, secure=settings.registry_tls,
                         insecure_registries_format=daemon_config.INSECURE_REGISTRIES_FORMAT)],
    )


def install_registry_ca(settings: Settings, state: dict) -> None:
    """TLS: the registry's CA where Docker reads it at each connection (no reload, no restart), and
    for the pull-through cache's port too (Docker looks the CA up by host:port)."""
    put_registry_ca(settings, registry_files.client_ca_path(settings), state["files"].get("ca"), "Docker")
    if settings.proxy_mirror:
        put_registry_ca(settings, registry_files.client_ca_path(cache_settings(settings)),
                        state["files"].get("proxy_ca"), "Docker (the pull-through cache)")
