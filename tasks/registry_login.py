"""`docker login` of every host's root Docker to a registry that requires authentication, and the
logout when it no longer does.

Idempotent without reading any secret back: the login writes a stamp (user and bcrypt hash) that
the next run verifies the password against; the password reaches `docker login` on stdin.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from regdeploy import credentials, registry_files, security
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState


@deploy("Log Docker in to the registry")
def log_in_to_registry(settings: Settings, state: HostState) -> None:
    """`state` is the host's DockerHostState fact."""
    found = state.stamps.get("login")
    address = settings.registry_address
    if settings.registry_auth and settings.registry_docker_login:
        user, password = security.login(settings)
        if credentials.stamp_matches(found, user, password):
            host.noop(f"Docker is logged in to {address} as {user}")
            return
        server.shell(name=f"Log Docker in to {address} as {user}",
                     commands=[render("docker-login.sh.j2", registry=address, user=user,
                                      config_dir=registry_files.DOCKER_CONFIG_DIR,
                                      stamp=credentials.stamp(user, password), stamp_path=registry_files.LOGIN_STAMP)],
                     _stdin=password)
    elif found:
        server.shell(name=f"Log Docker out of {address} (registry_auth or registry_docker_login is off)",
                     commands=[f"DOCKER_CONFIG={shlex.quote(registry_files.DOCKER_CONFIG_DIR)} docker logout "
                               f"{shlex.quote(address)} >/dev/null && rm -f {shlex.quote(registry_files.LOGIN_STAMP)}"])
