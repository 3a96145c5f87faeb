"""The registry server's secure-mode files: TLS certificate and key, the htpasswd file, and the
credentials regdeploy's own scripts on the server authenticate with.

Each file is compared with what the server's DockerHostState fact reported (hash, mode, owner; for
htpasswd and credentials: by verifying passwords against bcrypt hashes) and written only when it
differs. Secrets reach the server on the command's stdin, never on its command line. Files a mode
no longer uses are removed after the registry container has been replaced, so a rollback to the
previous container still finds them.
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
from .host_files import put_if_changed


def _put(path: str, mode: str, content: str | None = None, **extra) -> str:
    return render("put-file.sh.j2", path=path, mode=mode, content=content, **extra)


@deploy("Install the registry's TLS and authentication files")
def install_registry_secrets(settings: Settings, state: HostState) -> None:
    """`state` is the server's DockerHostState fact."""
    files, stamps = state.files, state.stamps
    for line in security.made:
        host.log(line)  # a new CA, a re-issued certificate: said where the operator looks
    material = security.tls_material(settings)
    if material:
        cert, key = registry_files.tls_cert_path(settings), registry_files.tls_key_path(settings)
        put_if_changed(cert, material.cert_pem, files.get("tls_cert"), f"Install the registry's TLS certificate {cert}",
                       dir_mode="700")
        put_if_changed(key, material.key_pem, files.get("tls_key"), f"Install the registry's TLS key {key} (mode 600)",
                       mode="600", secret=True, dir_mode="700")

    if not settings.registry_auth:
        return
    passwords = security.passwords(settings)
    path = registry_files.htpasswd_path(settings)
    found = files.get("htpasswd")
    current = "".join(f"{line}\n" for line in state.lines.get("htpasswd", [])) if found else None
    wanted = credentials.plan_htpasswd(current, passwords)
    rotated = credentials.rotated_entries(current, passwords) if settings.registry_access and wanted else ""
    if rotated:
        # The old hashes first: the token service accepts them too until every host has logged in
        # with the new password (drop_previous_passwords, after the logins).
        previous = registry_files.previous_htpasswd_path(settings)
        host.log(f"Will keep the previous passwords of {', '.join(l.split(':')[0] for l in rotated.splitlines())} "
                 f"in {previous} until every host has logged in with the new ones")
        server.shell(name=f"Keep the rotated passwords' previous hashes in {previous} (mode 600)",
                     commands=[_put(previous, "600", dir_mode="755")], _stdin=rotated)
    if wanted is not None or found.split()[1:] != ["600", "root"]:
        host.log(f"Will {'write' if wanted else 'fix the mode of'} {path} (users: {', '.join(passwords)})")
        server.shell(name=f"Write the registry's users to {path} (mode 600)",
                     commands=[_put(path, "600", dir_mode="755")], _stdin=wanted or current)
    user, password = security.login(settings)
    if not credentials.stamp_matches(stamps.get("api"), user, password):
        path = registry_files.api_credentials_path(settings)
        server.shell(name=f"Write regdeploy's registry credentials on the server {path} (user {user}, mode 600)",
                     commands=[_put(path, "600", stamp=credentials.stamp(user, password),
                                    stamp_path=registry_files.api_stamp_path(settings))],
                     _stdin=credentials.curl_config(user, password))


@deploy("End the password rotation")
def drop_previous_passwords(settings: Settings, state: HostState) -> None:
    """After every host's login: the previous hashes of rotated passwords are no longer accepted."""
    current = "".join(f"{line}\n" for line in state.lines.get("htpasswd", [])) if "htpasswd" in state.files else None
    rotating = settings.registry_access and credentials.rotated_entries(current, security.passwords(settings))
    if rotating or "htpasswd_previous" in state.files:
        previous = registry_files.previous_htpasswd_path(settings)
        server.shell(name=f"Stop accepting the previous passwords (remove {previous})",
                     commands=[f"rm -f {shlex.quote(previous)}"])


@deploy("Remove the registry's unused TLS and authentication files")
def remove_unused_secrets(settings: Settings, state: HostState) -> None:
    """After the registry container was replaced: a mode switched off leaves no key or credentials."""
    files = state.files
    unused = []
    if not settings.registry_tls and ({"tls_cert", "tls_key"} & files.keys()):
        unused.append(registry_files.tls_dir(settings))
    if not settings.registry_auth:
        if "htpasswd" in files:
            unused.append(registry_files.auth_dir(settings))
        if "api" in state.stamps or "api" in files:
            unused += [registry_files.api_credentials_path(settings), registry_files.api_stamp_path(settings)]
    if unused:
        server.shell(name=f"Remove {', '.join(unused)} (no longer used)",
                     commands=[f"rm -rf {' '.join(shlex.quote(p) for p in unused)}"])
