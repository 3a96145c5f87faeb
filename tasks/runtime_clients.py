"""Make containerd (without Docker) and Podman trust the registry, each through its own files only
(regdeploy.runtime_config decides what they become). Nothing restarts for hosts.toml or the Podman
drop-in: both are read at each pull. containerd restarts only when config.toml itself changed.

containerd's credentials (CRI's auth in config.toml) go in with the login (tasks.registry_login), at
its place in the deploy: config.toml is then written there, not here."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import server

from regdeploy import registry_files, runtime_config, runtimes
from regdeploy.changes import text_diff
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState
from .host_files import put_if_changed
from .registry_ca import put_registry_ca


@deploy("Make containerd trust the registry")
def trust_registry_containerd(settings: Settings, state: HostState) -> None:
    """`state` is the host's DockerHostState fact."""
    address, files = settings.registry_address, state.files
    directory = runtime_config.containerd_hosts_dir(address)
    put_registry_ca(settings, f"{directory}/ca.crt", files.get("containerd_ca"), "containerd")
    changed = put_if_changed(f"{directory}/hosts.toml", runtime_config.hosts_toml(address, settings.registry_tls),
                              files.get("containerd_hosts"), f"Write containerd's {directory}/hosts.toml")
    if logs_in(settings):
        # config.toml with the credentials, planned and written at the login's place (a config regdeploy
        # must not touch stops the deploy there too: pyinfra runs nothing before every operation exists).
        if not changed:
            host.noop(f"containerd reaches {address} through {directory}/hosts.toml")
        return
    plan = containerd_config_plan(settings, state, login=None)
    if plan.content is None:
        if not changed:
            host.noop(f"containerd reaches {address} through {directory}/hosts.toml ({plan.reason})")
        return
    server.shell(name=f"Remove regdeploy's credentials for {address} from {runtime_config.CONTAINERD_CONFIG} and "
                      "restart containerd" if plan.login is False else
                      f"Set config_path in {runtime_config.CONTAINERD_CONFIG} and restart containerd",
                 commands=[containerd_config_script(state, plan)])


def logs_in(settings: Settings) -> bool:
    """Whether the deploy gives this host's runtimes credentials for the registry."""
    return bool(settings.registry_auth and settings.registry_docker_login)


def containerd_config_plan(settings: Settings, state: HostState,
                           login: runtime_config.ContainerdLogin | None) -> runtime_config.ContainerdConfigPlan:
    """What config.toml becomes: config_path, and CRI's credentials for the registry as `login` says
    (None: regdeploy's own, if its stamp says they are there, go)."""
    major = runtimes.major_version(state.versions.get("containerd") or state.versions.get("containerd.io"))
    try:
        return runtime_config.plan_containerd_config(
            _containerd_config(state), major, f"host {host.name!r}", settings.registry_address, login,
            ours="containerd_login" in state.stamps)
    except runtime_config.RuntimeConfigError as exc:
        raise DeployError(str(exc)) from None


def _containerd_config(state: HostState) -> str | None:
    """config.toml as the fact read it, every secret's value masked (None: absent)."""
    if "containerd_config" not in state.files:
        return None
    return "".join(f"{line}\n" for line in state.lines.get("containerd_config", []))


def containerd_config_script(state: HostState, plan: runtime_config.ContainerdConfigPlan, stamp: str = "") -> str:
    """The script that writes the plan's config.toml and restarts containerd, after logging what changes
    (the diff shows masked lines and the password's placeholder, never a secret). With credentials
    (plan.login), it runs inside the login script, which gives it $toml_password, and writes `stamp`."""
    current = _containerd_config(state)
    host.log(f"Will {'modify' if current is not None else 'create'} {runtime_config.CONTAINERD_CONFIG} and restart "
             f"containerd ({plan.reason}):")
    for line in text_diff(current, plan.content, runtime_config.CONTAINERD_CONFIG):
        host.log(f"  {line}")
    return render("apply-containerd-config.sh.j2", path=runtime_config.CONTAINERD_CONFIG, content=plan.content,
                  login=plan.login, stamp=stamp, stamp_path=registry_files.CONTAINERD_LOGIN_STAMP,
                  password_on_stdin=runtime_config.PASSWORD_ON_STDIN)


@deploy("Make Podman trust the registry")
def trust_registry_podman(settings: Settings, state: HostState) -> None:
    """`state` is the host's DockerHostState fact."""
    address, files = settings.registry_address, state.files
    put_registry_ca(settings, runtime_config.podman_ca_path(address), files.get("podman_ca"), "Podman")
    if not put_if_changed(runtime_config.PODMAN_DROPIN, runtime_config.podman_dropin(address, settings.registry_tls),
                           files.get("podman_conf"), f"Write Podman's {runtime_config.PODMAN_DROPIN}"):
        host.noop(f"Podman's {runtime_config.PODMAN_DROPIN} lists {address}")
