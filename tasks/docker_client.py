"""Make a host's Docker trust the registry: its CA in Docker's certs.d (TLS modes), daemon.json
merged (never overwritten) and applied with the least disruption.

The decision (what the file becomes, reload or restart, or a refusal) is daemon_config.plan_daemon_json,
a pure function of the host's DockerHostState fact; this turns it into operations.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from regdeploy import daemon_config, registry_files
from regdeploy.rendering import render
from regdeploy.settings import Settings, cache_settings
from regdeploy.host_state import HostState
from .registry_ca import put_registry_ca


@deploy("Trust the registry in Docker's daemon.json")
def trust_registry(settings: Settings, state: HostState, plan: daemon_config.DaemonJsonPlan,
                   with_install: bool = False) -> None:
    """`state` is the host's DockerHostState fact, `plan` its host_plan.HostPlan.daemon_json;
    `with_install`: the file went in with Docker's install (docker_packages.with_install())."""
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
        verb = plan.action if state.active else "start"
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


def install_registry_ca(settings: Settings, state: HostState) -> None:
    """TLS: the registry's CA where Docker reads it at each connection (no reload, no restart), and
    for the pull-through cache's port too (Docker looks the CA up by host:port)."""
    put_registry_ca(settings, registry_files.client_ca_path(settings), state.files.get("ca"), "Docker")
    if settings.proxy_mirror:
        put_registry_ca(settings, registry_files.client_ca_path(cache_settings(settings)),
                        state.files.get("proxy_ca"), "Docker (the pull-through cache)")
