"""Read every host's inventory data, apply the defaults, validate it all before any host is touched.

Validation runs over the whole inventory on the first host the deploy file sees, so one bad value
on one client stops the deploy for every host, with every problem listed at once.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import field, make_dataclass
from typing import Any, Iterable

from .variables import DEFAULTS, VARIABLES, Invalid

VARIABLES_BY_NAME = {v.name: v for v in VARIABLES}

SERVER_GROUP = "registry_servers"
CLIENT_GROUP = "docker_clients"


class ConfigError(Exception):
    """Inventory data regdeploy cannot use; raised before any operation runs on any host."""


class _Derived:
    """What Settings computes from its fields (the fields themselves come from VARIABLES)."""

    @property
    def registry_address(self) -> str:
        return registry_address(self.registry_host, self.registry_port)

    @property
    def registry_config_path(self) -> str:
        """The rendered config.yml on the server (mounted read-only into the container)."""
        return posixpath.join(self.registry_config_dir, "config.yml")


# The validated settings for one host: one typed field per variable (lists are tuples), plus the
# host's name and whether it is the registry server.
Settings = make_dataclass(
    "Settings",
    [("host_name", str)] + [(v.name, v.kind.type) for v in VARIABLES] + [("is_server", bool, field(default=False))],
    bases=(_Derived,), frozen=True,
)


def registry_address(host: str, port: int) -> str:
    """`<host>:<port>`, the name clients push to and list in insecure-registries: built only here."""
    return f"{host}:{port}"


def _raw(data: Any, name: str) -> Any:
    value = data.get(name) if hasattr(data, "get") else getattr(data, name, None)
    return DEFAULTS[name] if value is None else value


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_archive_hashes: dict[tuple[str, int, int], str] = {}


def archive_sha256(path: str) -> str:
    """SHA-256 of a controller file, computed once per version of the file and process (a deploy
    asks for it on every host, for validation and for the container spec)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _archive_hashes:
        _archive_hashes[key] = _sha256(path)
    return _archive_hashes[key]


def build_settings(host_name: str, data: Any, server_name: str, is_server: bool,
                   errors: list[str], check_files: bool = True) -> Settings:
    """Settings for one host from its data; problems are appended to `errors` (nothing raised).

    Every variable is parsed by its kind (variables.py); a refused value is reported and replaced
    by its default so the other checks still run. `check_files` checks the controller-side archives
    (existence, SHA-256): a deploy needs them, a catalog listing does not.
    """
    where = f"host {host_name!r}"
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        try:
            values[variable.name] = variable.kind.parse(variable.name, _raw(data, variable.name))
        except Invalid as exc:
            errors.append(f"{where}: {exc}")
            values[variable.name] = variable.kind.parse(variable.name, variable.default)

    # What depends on more than one value, or on the controller's files.
    if not values["registry_host"]:
        try:
            values["registry_host"] = VARIABLES_BY_NAME["registry_host"].kind.parse("registry_host", server_name)
        except Invalid as exc:
            errors.append(f"{where}: {exc}")
            values["registry_host"] = server_name
    archive, expected_sha = values["registry_image_archive"], values["registry_image_archive_sha256"]
    if is_server and archive and check_files:
        if not os.path.isfile(archive):
            errors.append(f"{where}: registry_image_archive={archive!r} does not exist on the controller; "
                          "give the path of a `docker save` tarball or leave it empty to pull")
        elif expected_sha and archive_sha256(archive) != expected_sha:
            errors.append(f"{where}: registry_image_archive {archive!r} has SHA-256 "
                          f"{archive_sha256(archive)}, not registry_image_archive_sha256={expected_sha}")
    if is_server and check_files:
        for path in values["registry_seed_archives"]:
            if not os.path.isfile(path):
                errors.append(f"{where}: registry_seed_archives entry {path!r} does not exist on the controller")

    return Settings(host_name=host_name, is_server=is_server, **values)


def validate_hosts(hosts: Iterable[tuple[str, Any, set[str]]], check_files: bool = True) -> dict[str, Settings]:
    """Validate every (name, data, groups) host; return their settings or raise one ConfigError.

    Exactly one host must be in `registry_servers`. Every host's registry address must agree,
    since they all talk to the same registry.
    """
    hosts = list(hosts)
    servers = [name for name, _, groups in hosts if SERVER_GROUP in groups]
    errors: list[str] = []
    if len(servers) != 1:
        found = ", ".join(servers) if servers else "none"
        raise ConfigError(
            f"the inventory must have exactly one host in the group {SERVER_GROUP!r} (found: {found}); "
            "put the registry server there and the other machines in 'docker_clients'"
        )
    server = servers[0]
    settings = {
        name: build_settings(name, data, server, SERVER_GROUP in groups, errors, check_files)
        for name, data, groups in hosts
    }
    addresses = {s.registry_address for s in settings.values()}
    if not errors and len(addresses) > 1:
        errors.append(f"hosts disagree on the registry address ({', '.join(sorted(addresses))}); "
                      "set registry_host/registry_port for all hosts (group data), not per host")
    if errors:
        raise ConfigError("invalid inventory data, nothing was changed on any host:\n  - "
                          + "\n  - ".join(errors))
    return settings


_validated: dict[int, tuple[Any, dict[str, Settings]]] = {}


def from_inventory(inventory: Any) -> dict[str, Settings]:
    """validate_hosts() for a pyinfra Inventory (every host, active or not: --limit must not hide
    errors). pyinfra runs deploy.py once per host: the inventory is validated on the first call
    only, not N times over N hosts."""
    cached = _validated.get(id(inventory))
    if cached is None or cached[0] is not inventory:
        cached = (inventory, validate_hosts((h.name, h.data, set(h.groups)) for h in inventory))
        _validated[id(inventory)] = cached
    return cached[1]
