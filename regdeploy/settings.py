"""Read every host's inventory data, apply the defaults, validate it all before any host is touched.

Validation runs over the whole inventory on the first host the deploy file sees, so one bad value
on one client stops the deploy for every host, with every problem listed at once.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass
from typing import Any, Iterable

from . import reference
from .defaults import DEFAULTS

SERVER_GROUP = "registry_servers"
CLIENT_GROUP = "docker_clients"
INSTALL_SOURCES = ("distro", "docker-ce", "none")
_RESTART_POLICY_RE = re.compile(r"^(no|always|unless-stopped|on-failure(:[0-9]+)?)$")
_HOSTNAME_RE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
    r"|^\[[0-9a-fA-F:]+\]$"
)


class ConfigError(Exception):
    """Inventory data regdeploy cannot use; raised before any operation runs on any host."""


@dataclass(frozen=True)
class Settings:
    """The validated settings for one host (values are typed; lists are tuples)."""

    host_name: str
    registry_host: str
    registry_port: int
    registry_image: str
    registry_image_archive: str
    registry_image_archive_sha256: str
    registry_container_name: str
    registry_data_dir: str
    registry_config_dir: str
    registry_restart_policy: str
    registry_ready_timeout: int
    registry_mirrors: tuple[str, ...]
    registry_seed_images: tuple[str, ...]
    registry_seed_archives: tuple[str, ...]
    docker_install_source: str
    docker_ce_repo_url: str
    docker_daemon_json: str
    deploy_lock_timeout: int
    is_server: bool = False

    @property
    def registry_address(self) -> str:
        return registry_address(self.registry_host, self.registry_port)

    @property
    def registry_config_path(self) -> str:
        """The rendered config.yml on the server (mounted read-only into the container)."""
        return posixpath.join(self.registry_config_dir, "config.yml")


def registry_address(host: str, port: int) -> str:
    """`<host>:<port>`, the name clients push to and list in insecure-registries: built only here."""
    return f"{host}:{port}"


def _get(data: Any, name: str) -> Any:
    value = data.get(name) if hasattr(data, "get") else getattr(data, name, None)
    return DEFAULTS[name] if value is None else value


def _as_list(value: Any) -> list:
    # `--data key=a,b` arrives as a string; inventory files give lists.
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


def _as_int(name: str, value: Any, low: int, high: int, errors: list[str], where: str) -> int:
    try:
        number = int(value)
        if isinstance(value, bool) or str(number) != str(value).strip():
            raise ValueError
    except (TypeError, ValueError):
        errors.append(f"{where}: {name}={value!r} is not a whole number; set it to {low}..{high}")
        return DEFAULTS[name]
    if not low <= number <= high:
        errors.append(f"{where}: {name}={number} is out of range; set it to {low}..{high}")
    return number


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

    `check_files` checks the controller-side archives (existence, SHA-256): a deploy needs them,
    a catalog listing does not.
    """
    where = f"host {host_name!r}"

    registry_host = str(_get(data, "registry_host")).strip() or server_name
    if not _HOSTNAME_RE.match(registry_host):
        errors.append(f"{where}: registry_host={registry_host!r} is not a host name or IP address; "
                      "set it to the name clients use to reach the registry server")

    port = _as_int("registry_port", _get(data, "registry_port"), 1, 65535, errors, where)
    timeout = _as_int("registry_ready_timeout", _get(data, "registry_ready_timeout"), 1, 3600, errors, where)
    lock_timeout = _as_int("deploy_lock_timeout", _get(data, "deploy_lock_timeout"), 0, 86400, errors, where)

    image = str(_get(data, "registry_image"))
    try:
        reference.parse(image)
    except reference.ReferenceError as exc:
        errors.append(f"{where}: registry_image: {exc}")

    source = str(_get(data, "docker_install_source"))
    if source not in INSTALL_SOURCES:
        errors.append(f"{where}: docker_install_source={source!r} is unknown; "
                      f"use one of {', '.join(INSTALL_SOURCES)}")

    policy = str(_get(data, "registry_restart_policy"))
    if not _RESTART_POLICY_RE.match(policy):
        errors.append(f"{where}: registry_restart_policy={policy!r} is not a Docker restart policy; "
                      "use no, always, unless-stopped or on-failure[:N]")

    for name in ("registry_data_dir", "registry_config_dir", "docker_daemon_json"):
        path = str(_get(data, name))
        if not path.startswith("/") or "\n" in path:
            errors.append(f"{where}: {name}={path!r} must be an absolute path on the host")

    name = str(_get(data, "registry_container_name"))
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        errors.append(f"{where}: registry_container_name={name!r} is not a valid container name")

    archive = str(_get(data, "registry_image_archive"))
    expected_sha = str(_get(data, "registry_image_archive_sha256")).lower()
    if is_server and archive and check_files:
        if not os.path.isfile(archive):
            errors.append(f"{where}: registry_image_archive={archive!r} does not exist on the controller; "
                          "give the path of a `docker save` tarball or leave it empty to pull")
        elif expected_sha and archive_sha256(archive) != expected_sha:
            errors.append(f"{where}: registry_image_archive {archive!r} has SHA-256 "
                          f"{archive_sha256(archive)}, not registry_image_archive_sha256={expected_sha}")
    if expected_sha and not re.fullmatch(r"[0-9a-f]{64}", expected_sha):
        errors.append(f"{where}: registry_image_archive_sha256 must be 64 hex digits")

    mirrors = _as_list(_get(data, "registry_mirrors"))
    for mirror in mirrors:
        if not re.match(r"^https?://[^\s/]+", str(mirror)):
            errors.append(f"{where}: registry_mirrors entry {mirror!r} must be an http(s):// URL")

    seeds = _as_list(_get(data, "registry_seed_images"))
    for seed in seeds:
        try:
            reference.parse(str(seed))
        except reference.ReferenceError as exc:
            errors.append(f"{where}: registry_seed_images: {exc}")
    seed_archives = _as_list(_get(data, "registry_seed_archives"))
    if is_server and check_files:
        for path in seed_archives:
            if not os.path.isfile(str(path)):
                errors.append(f"{where}: registry_seed_archives entry {path!r} does not exist on the controller")

    repo_url = str(_get(data, "docker_ce_repo_url")).rstrip("/")
    if source == "docker-ce" and not re.match(r"^https?://\S+$", repo_url):
        errors.append(f"{where}: docker_ce_repo_url={repo_url!r} must be an http(s):// URL")

    return Settings(
        host_name=host_name,
        registry_host=registry_host,
        registry_port=port,
        registry_image=image,
        registry_image_archive=archive,
        registry_image_archive_sha256=expected_sha,
        registry_container_name=name,
        registry_data_dir=str(_get(data, "registry_data_dir")).rstrip("/") or "/",
        registry_config_dir=str(_get(data, "registry_config_dir")).rstrip("/") or "/",
        registry_restart_policy=policy,
        registry_ready_timeout=timeout,
        registry_mirrors=tuple(str(m) for m in mirrors),
        registry_seed_images=tuple(str(s) for s in seeds),
        registry_seed_archives=tuple(str(p) for p in seed_archives),
        docker_install_source=source,
        docker_ce_repo_url=repo_url,
        docker_daemon_json=str(_get(data, "docker_daemon_json")),
        deploy_lock_timeout=lock_timeout,
        is_server=is_server,
    )


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
