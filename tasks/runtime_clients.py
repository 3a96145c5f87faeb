"""Make containerd (without Docker) and Podman trust the registry, each through its own files only
(regdeploy.runtime_config decides what they become). Nothing restarts for hosts.toml or the Podman
drop-in: both are read at each pull. containerd restarts only when config.toml itself changed."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import server

from regdeploy import runtime_config, runtimes
from regdeploy.changes import text_diff
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState
from .host_files import put_if_changed
from .registry_ca import put_registry_ca


def _warn_without_credentials(settings: Settings, runtime: str) -> None:
    if settings.registry_auth:
        host.log(f"registry_auth: regdeploy logs in Docker and Podman only; {runtime} on this host has no "
                 f"credentials for {settings.registry_address} and will be refused until it has some",
                 log_func=logger.warning)


@deploy("Make containerd trust the registry")
def trust_registry_containerd(settings: Settings, state: HostState) -> None:
    """`state` is the host's DockerHostState fact."""
    address, files = settings.registry_address, state.files
    directory = runtime_config.containerd_hosts_dir(address)
    current = ("".join(f"{line}\n" for line in state.lines.get("containerd_config", []))
               if "containerd_config" in files else None)
    major = runtimes.major_version(state.versions.get("containerd") or state.versions.get("containerd.io"))
    try:
        plan = runtime_config.plan_containerd_config(current, major, f"host {host.name!r}")
    except runtime_config.RuntimeConfigError as exc:
        raise DeployError(str(exc)) from None
    _warn_without_credentials(settings, "containerd")
    put_registry_ca(settings, f"{directory}/ca.crt", files.get("containerd_ca"), "containerd")
    changed = put_if_changed(f"{directory}/hosts.toml", runtime_config.hosts_toml(address, settings.registry_tls),
                              files.get("containerd_hosts"), f"Write containerd's {directory}/hosts.toml")
    if plan.content is None:
        if not changed:
            host.noop(f"containerd reaches {address} through {directory}/hosts.toml ({plan.reason})")
        return
    host.log(f"Will {'modify' if current is not None else 'create'} {runtime_config.CONTAINERD_CONFIG} and restart "
             f"containerd ({plan.reason}):")
    for line in text_diff(current, plan.content, runtime_config.CONTAINERD_CONFIG):
        host.log(f"  {line}")
    server.shell(name=f"Set config_path in {runtime_config.CONTAINERD_CONFIG} and restart containerd",
                 commands=[render("apply-containerd-config.sh.j2", path=runtime_config.CONTAINERD_CONFIG,
                                  content=plan.content)])


@deploy("Make Podman trust the registry")
def trust_registry_podman(settings: Settings, state: HostState) -> None:
    """`state` is the host's DockerHostState fact."""
    address, files = settings.registry_address, state.files
    put_registry_ca(settings, runtime_config.podman_ca_path(address), files.get("podman_ca"), "Podman")
    if not put_if_changed(runtime_config.PODMAN_DROPIN, runtime_config.podman_dropin(address, settings.registry_tls),
                           files.get("podman_conf"), f"Write Podman's {runtime_config.PODMAN_DROPIN}"):
        host.noop(f"Podman's {runtime_config.PODMAN_DROPIN} lists {address}")
