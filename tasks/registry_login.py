"""`docker login` of every host's root Docker (`podman login` where Podman pulls, CRI's credentials in
config.toml where containerd does) to a registry that requires authentication, and the logout when it
no longer does.

Idempotent without reading any secret back: the login writes a stamp (user and bcrypt hash) that
the next run verifies the password against; the password reaches `docker login` and `podman login`
on stdin, and containerd's config.toml from stdin too.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from regdeploy import credentials, registry_files, runtime_config, security
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState
from .runtime_clients import containerd_config_plan, containerd_config_script, logs_in


@dataclass(frozen=True)
class _Runtime:
    name: str  # as said in operation names
    stamp_label: str  # the fact's stamp for it
    logout: str  # the command that logs it out and removes its stamp (containerd: runtime_clients does)
    local_user: str = ""  # a local user's Docker (registry_login_local_users)


@deploy("Log in to the registry")
def log_in_to_registry(settings: Settings, state: HostState, docker: bool, podman: bool,
                       containerd: bool = False) -> None:
    """Root's Docker (`docker`), Podman (`podman`, into an auth file that survives a reboot) and
    containerd (`containerd`: CRI's credentials in config.toml, which restarts it), each as this host's
    registry_login_user; `state` is the host's DockerHostState fact. One operation per
    host, at one place in the deploy for every host: pyinfra orders operations across hosts by the
    hosts that share them, and the server's own login comes after its registry runs, so every host's
    login does too."""
    address = settings.registry_address
    quoted = shlex.quote(address)
    runtimes = []
    if docker:
        runtimes.append(_Runtime("Docker", "login", f"DOCKER_CONFIG={shlex.quote(registry_files.DOCKER_CONFIG_DIR)} "
                                 f"docker logout {quoted} >/dev/null && rm -f {shlex.quote(registry_files.LOGIN_STAMP)}"))
        # Local users' Docker (registry_login_local_users), each as them, into their own home.
        for local in settings.registry_login_local_users:
            runtimes.append(_Runtime(f"Docker ({local})", registry_files.local_login_label(local),
                                     f"log_out_local_user {shlex.quote(local)} {quoted}", local))
    if podman:
        runtimes.append(_Runtime("Podman", "podman_login",
                                 f"podman logout --authfile {shlex.quote(registry_files.PODMAN_AUTH)} {quoted} "
                                 f">/dev/null 2>&1; rm -f {shlex.quote(registry_files.PODMAN_LOGIN_STAMP)}"))
    if logs_in(settings):
        user, password = security.login(settings)
        stale = [r for r in runtimes if not credentials.stamp_matches(state.stamps.get(r.stamp_label), user, password)]
        names = {r.name for r in stale}
        stamp = credentials.stamp(user, password)
        containerd_script = None
        if containerd:
            # config_path and the credentials, written here (runtime_clients left config.toml to this place).
            runtimes.append(_Runtime("containerd", "containerd_login", ""))
            plan = containerd_config_plan(settings, state, runtime_config.ContainerdLogin(
                user, credentials.stamp_matches(state.stamps.get("containerd_login"), user, password)))
            if plan.content is not None:
                stale.append(runtimes[-1])
                containerd_script = containerd_config_script(state, plan, stamp)
        script = render("registry-login.sh.j2", registry=address, user=user, stamp=stamp,
                        docker=dict(config_dir=registry_files.DOCKER_CONFIG_DIR,
                                    stamp_path=registry_files.LOGIN_STAMP) if "Docker" in names else None,
                        podman=dict(auth_file=registry_files.PODMAN_AUTH,
                                    stamp_path=registry_files.PODMAN_LOGIN_STAMP) if "Podman" in names else None,
                        containerd=containerd_script,
                        local_users=[r.local_user for r in stale if r.local_user],
                        local_stamp=registry_files.LOCAL_LOGIN_STAMP,
                        ) if stale else ""
        # The password on stdin's first line; containerd's, a TOML string, on its second.
        stdin = [password] + ([runtime_config.toml_string(password)] if containerd else [])
        # Also when nothing is stale: then the operation has no command (no change), and is there only
        # so every host has it at the same place. pyinfra orders operations across hosts by the ones
        # they share: the server's puts every login after its htpasswd, token service and registry,
        # and before the end of a password rotation (drop_previous_passwords).
        said = " and ".join(r.name for r in (stale or runtimes))
        server.shell(name=f"Log {said} in to {address} as {user}" if stale else
                     f"{said} logged in to {address} as {user}",
                     commands=[script] if stale else [], _stdin=stdin if stale else None)
        return
    found = [r for r in runtimes if state.stamps.get(r.stamp_label)]
    if found:
        logout = " && ".join(f"{{ {r.logout}; }}" for r in found)
        if any(r.local_user for r in found):
            logout = render("local-docker-user.sh.j2", local_stamp=registry_files.LOCAL_LOGIN_STAMP) + logout
        server.shell(name=f"Log {' and '.join(r.name for r in found)} out of {address} (registry_auth or "
                          "registry_docker_login is off)", commands=[logout])
