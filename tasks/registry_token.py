"""registry_access: regdeploy's token service on the registry server (each replica), supervised by
systemd. Its files are compared with what the server's DockerHostState fact read and written only
when they differ; the service restarts only when something it reads at start changed (its unit says
what: registry_files.token_unit), and a deploy waits until it answers before the registry is told to
send clients there. Switched off, the service and its files are removed once the registry no longer
points at it."""

from __future__ import annotations

import hashlib

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server

from regdeploy import access, registry_files, security
from regdeploy.host_state import HostState
from regdeploy.rendering import render
from regdeploy.settings import Settings
from .host_files import put_if_changed


@deploy("Run the registry's token service")
def run_token_service(settings: Settings, state: HostState) -> None:
    """`state` is the server's DockerHostState fact."""
    files = state.files
    missing = [name for name in access.TOKEN_PACKAGES if not state.packages.get(name)]
    if missing:
        apt.packages(name=f"Install the token service's packages ({', '.join(missing)})", packages=missing,
                     update=True, no_recommends=True)
    signing = security.signing_material(settings)
    assert signing is not None  # registry_access is set
    script = registry_files.token_service_script()
    # The TLS certificate is not among them: the service loads a re-issued one for the next connection.
    inputs = hashlib.sha256("\0".join((script, signing.key_pem)).encode()).hexdigest()[:16]
    changed = False
    changed |= put_if_changed(registry_files.TOKEN_SCRIPT, script, files.get("token_script"),
                              f"Install the token service {registry_files.TOKEN_SCRIPT}", dir_mode="755")
    changed |= put_if_changed(registry_files.token_key_path(settings), signing.key_pem, files.get("token_key"),
                              "Install the token signing key (mode 600)", mode="600", secret=True, dir_mode="700")
    changed |= put_if_changed(registry_files.token_cert_path(settings), signing.cert_pem, files.get("token_cert"),
                              "Install the token signing certificate (the registry's rootcertbundle)",
                              dir_mode="755")
    # config.json and htpasswd: re-read by the service when they change (no restart).
    put_if_changed(registry_files.token_config_path(settings), registry_files.token_service_config(settings),
                   files.get("token_config"), "Write the token service's rules (config.json, mode 600)", mode="600",
                   dir_mode="700")
    changed |= put_if_changed(registry_files.TOKEN_UNIT_PATH, registry_files.token_unit(settings, inputs),
                              files.get("token_unit"), f"Write the {registry_files.TOKEN_UNIT} systemd unit")
    running = "token_service" in state.running
    if not changed and "token_enabled" in files and running:
        host.noop(f"{registry_files.TOKEN_UNIT} runs as configured")
        return
    host.log(f"Will (re)start {registry_files.TOKEN_UNIT} and wait until it answers on port "
             f"{settings.registry_token_port}" + ("" if running or changed else " (it is not running)"))
    server.shell(name=f"Start {registry_files.TOKEN_UNIT} (port {settings.registry_token_port})",
                 commands=[render("start-token-service.sh.j2", unit=registry_files.TOKEN_UNIT,
                                  port=settings.registry_token_port,
                                  health=f"https://127.0.0.1:{settings.registry_token_port}/healthz")])


@deploy("Remove the registry's token service")
def remove_token_service(settings: Settings, state: HostState) -> None:
    """Once the registry no longer sends clients to it (registry_access emptied)."""
    if not any(label in state.files for label in registry_files.token_files(settings)):
        return
    server.shell(name=f"Stop {registry_files.TOKEN_UNIT} and remove its files (registry_access is empty)",
                 commands=[render("stop-token-service.sh.j2", unit=registry_files.TOKEN_UNIT,
                                  paths=registry_files.token_service_paths(settings))])
