"""The registry's CA where a container runtime reads it (Docker's, containerd's or Podman's certs.d):
installed in TLS mode, and in plain-HTTP mode taken away again if it is the one regdeploy generated
(anyone else's file stays)."""

from __future__ import annotations

import posixpath
import shlex
from pathlib import Path

from pyinfra.operations import server

from regdeploy import pki, security
from regdeploy.settings import Settings
from .host_files import put_if_changed


def put_registry_ca(settings: Settings, path: str, found: str | None, reader: str) -> None:
    """`found`: what the DockerHostState fact read of `path` ("SHA256 MODE OWNER", None: absent);
    `reader`: who reads it, for the operation's name."""
    material = security.tls_material(settings)
    if material:
        put_if_changed(path, material.ca_pem, found, f"Install the registry's CA for {reader} as {path}")
    elif found and _is_ours(settings, found):
        server.shell(name=f"Remove the registry's CA {path} ({reader}; registry_tls is off)",
                     commands=[f"rm -f {shlex.quote(path)} && {{ rmdir {shlex.quote(posixpath.dirname(path))} "
                               "2>/dev/null; true; }"])


def _is_ours(settings: Settings, found: str) -> bool:
    """Whether the CA file on the host is the CA regdeploy generated (and still keeps) for this registry."""
    directory = Path(settings.registry_tls_dir)
    ca = directory / pki.CA_CERT
    if not ca.is_file():
        return False
    # The bundle hosts get (during a rotation, two CAs), or the current CA alone (what they held before).
    return found.split()[0] in {pki.sha256(pki.trusted_pem(directory)), pki.sha256(ca.read_text())}
