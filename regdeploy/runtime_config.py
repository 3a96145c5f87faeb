"""What containerd's and Podman's files become so that they trust the registry: pure functions of
the settings and of what the host's DockerHostState fact read, table-tested with no host.

- containerd: `/etc/containerd/certs.d/<host:port>/hosts.toml` (plain HTTP, or the CA in TLS mode),
  read at each pull: changing it restarts nothing. `config_path` must point CRI (kubelet) at that
  directory: it is set in config.toml for both layouts (version 2: containerd 1.x, version 3: 2.x),
  every other setting kept (tomlkit keeps comments and order), and containerd restarts only when
  config.toml itself had to change. `ctr --hosts-dir` reads the directory directly.
- containerd's credentials (registry_auth): CRI's `registry.configs."<host:port>".auth` in config.toml,
  containerd's documented way for 1.7 and 2.x (deprecated there, not removed: hosts.toml has no auth).
  No secret is ever read back: the DockerHostState fact masks the value of every `password`, `auth`
  and `identitytoken` line (MASKED), the planned file carries PASSWORD_ON_STDIN where regdeploy's
  password goes, and the apply script puts both back on the host (the password from its stdin).
- Podman (and CRI-O): a drop-in `/etc/containers/registries.conf.d/50-regdeploy.conf` with a v2
  `[[registry]]` entry and, in TLS mode, the CA in `/etc/containers/certs.d/<host:port>/ca.crt`;
  the distribution's registries.conf is never edited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .lazy import lazy_import

# Loaded on first use: only containerd hosts need it.
tomlkit = lazy_import("tomlkit")

CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_CERTS_DIR = "/etc/containerd/certs.d"
PODMAN_DROPIN = "/etc/containers/registries.conf.d/50-regdeploy.conf"
PODMAN_CERTS_DIR = "/etc/containers/certs.d"

# Where CRI's registry settings live, per config.toml layout version.
REGISTRY_TABLE = {2: ("plugins", "io.containerd.grpc.v1.cri", "registry"),
                  3: ("plugins", "io.containerd.cri.v1.images", "registry")}


# What the fact shows instead of a secret line's value (`KEY= "<regdeploy: masked line N>"`, N the line's
# number in the file), and where regdeploy's own password goes in a planned file: both stay valid TOML.
SECRET_KEYS = ("password", "auth", "identitytoken")
MASKED = '"<regdeploy: masked line {}>"'
MASKED_LINE = re.compile(r'= "<regdeploy: masked line ([0-9]+)>"[ \t]*$')
PASSWORD_ON_STDIN = "<regdeploy: the password, on stdin>"


class RuntimeConfigError(ValueError):
    """A runtime configuration regdeploy must not touch; the message names host, file and fix."""


def toml_string(text: str) -> str:
    """`text` as a TOML basic string, quotes included (what replaces PASSWORD_ON_STDIN on the host)."""
    return tomlkit.string(text).as_string()


def containerd_hosts_dir(address: str) -> str:
    return f"{CONTAINERD_CERTS_DIR}/{address}"


def podman_ca_path(address: str) -> str:
    return f"{PODMAN_CERTS_DIR}/{address}/ca.crt"


def hosts_toml(address: str, tls: bool) -> str:
    """containerd's hosts.toml for the registry: HTTPS verified with the CA beside it, or plain HTTP."""
    scheme = "https" if tls else "http"
    lines = [f"# Written by regdeploy: how containerd reaches the registry {address}.",
             f'server = "{scheme}://{address}"', "",
             f'[host."{scheme}://{address}"]', '  capabilities = ["pull", "resolve", "push"]']
    if tls:
        lines.append(f'  ca = "{containerd_hosts_dir(address)}/ca.crt"')
    return "\n".join(lines) + "\n"


def podman_dropin(address: str, tls: bool) -> str:
    return (f"# Written by regdeploy: the registry it deploys (a v2 registries.conf entry).\n"
            f"[[registry]]\nlocation = \"{address}\"\ninsecure = {'false' if tls else 'true'}\n")


@dataclass(frozen=True)
class ContainerdLogin:
    """The account containerd pulls as (CRI's auth for the registry)."""
    user: str
    current: bool  # regdeploy's stamp: the file holds this account's password as it is now, mode 600


@dataclass(frozen=True)
class ContainerdConfigPlan:
    content: str | None  # config.toml as it must be (secrets masked); None: it stays as it is
    reason: str
    login: bool | None = None  # True: the content carries PASSWORD_ON_STDIN (mode 600, stamp written);
    #                             False: regdeploy's credentials leave the file (stamp removed)


def plan_containerd_config(current: str | None, containerd_major: int | None, where: str, address: str = "",
                           login: ContainerdLogin | None = None, ours: bool = False) -> ContainerdConfigPlan:
    """config.toml with CRI's registry `config_path` at CONTAINERD_CERTS_DIR and, with `login`, CRI's
    credentials for `address`. `current`: the file's text as the fact read it, secrets masked (None:
    absent); `containerd_major`: which layout a new file gets; `ours`: regdeploy's stamp is there (it
    wrote the credentials for `address`, which go when there is no `login`)."""
    if current is None or not current.strip():
        version = 3 if (containerd_major or 1) >= 2 else 2
        document = tomlkit.document()
        document["version"] = version
        reasons = [f"{CONTAINERD_CONFIG} is absent: written with config_path (layout version {version})"]
        _set_config_path(document, version)
    else:
        document, version = _parse(current, where)
        reasons = _config_path(document, version, where)
    said = _credentials(document, version, address, login, ours)
    if said:
        reasons.append(said)
    if not reasons:
        return ContainerdConfigPlan(None, f"config_path is {CONTAINERD_CERTS_DIR}"
                                          + (f", credentials of {login.user!r}" if login else ""))
    changed_login = login is not None if said else None
    return ContainerdConfigPlan(tomlkit.dumps(document), "; ".join(reasons) + ", every other setting kept",
                                changed_login)


def _parse(current: str, where: str):
    try:
        document = tomlkit.parse(current)
    except tomlkit.exceptions.TOMLKitError as exc:
        raise RuntimeConfigError(f"{where}: {CONTAINERD_CONFIG} is not valid TOML ({exc}); fix it by hand "
                                 "(regdeploy leaves it untouched)") from None
    version = document.get("version")
    if version not in REGISTRY_TABLE:
        raise RuntimeConfigError(
            f"{where}: {CONTAINERD_CONFIG} has layout version {version!r}; regdeploy sets config_path in "
            "version 2 (containerd 1.x) and 3 (containerd 2.x) files only. Run `containerd config migrate` "
            "(2.x) or add `version = 2` (1.x), then deploy again; nothing was changed")
    return document, version


def _config_path(document, version: int, where: str) -> list[str]:
    """Set config_path if it is not; what changed (nothing: [])."""
    registry = _get(document, REGISTRY_TABLE[version])
    found = registry.get("config_path") if registry is not None else None
    if found and str(found).rstrip("/") == CONTAINERD_CERTS_DIR:
        return []
    if found:
        raise RuntimeConfigError(
            f"{where}: {CONTAINERD_CONFIG} sets config_path = {str(found)!r}; regdeploy writes its hosts.toml in "
            f"{CONTAINERD_CERTS_DIR}. Point config_path there, or keep yours and write the registry's "
            "hosts.toml yourself (client_runtimes without containerd); nothing was changed")
    # What containerd itself refuses beside config_path (empty tables, as `containerd config default`
    # writes them, and `configs.*.auth` are fine).
    configs = registry.get("configs") if registry is not None else None
    if registry is not None and (registry.get("mirrors") or any(
            hasattr(entry, "get") and "tls" in entry for entry in (configs or {}).values())):
        raise RuntimeConfigError(
            f"{where}: {CONTAINERD_CONFIG} configures registries with the old `mirrors` or `configs.*.tls` tables, "
            "which containerd refuses together with config_path. Move them to hosts.toml files (containerd's "
            "docs/hosts.md) and deploy again; nothing was changed")
    _set_config_path(document, version)
    return [f"config_path set to {CONTAINERD_CERTS_DIR} (layout version {version})"]


def _credentials(document, version: int, address: str, login: ContainerdLogin | None, ours: bool) -> str:
    """CRI's credentials for `address` as `login` wants them; what changed ("": nothing)."""
    path = REGISTRY_TABLE[version] + ("configs", address)
    entry = _get(document, path)
    auth = entry.get("auth") if hasattr(entry, "get") else None
    if login is not None:
        if (login.current and auth is not None and hasattr(auth, "get") and auth.get("username") == login.user
                and set(auth) == {"username", "password"}):
            return ""
        table = tomlkit.table()
        table["username"] = login.user
        table["password"] = PASSWORD_ON_STDIN
        node = document
        for key in path:
            if key not in node:
                node[key] = tomlkit.table(is_super_table=True)
            node = node[key]
        node["auth"] = table
        return f"credentials of {login.user!r} for {address} (CRI's registry.configs)"
    if not (ours and auth is not None):
        return ""
    del entry["auth"]
    # Tables left empty by that go too, up to the registry table.
    for depth in range(len(path), len(REGISTRY_TABLE[version]), -1):
        node = _get(document, path[:depth])
        if node is not None and len(node) == 0:
            del _get(document, path[:depth - 1])[path[depth - 1]]
    return f"regdeploy's credentials for {address} removed"


def _get(document, path: tuple[str, ...]):
    node = document
    for key in path:
        if not hasattr(node, "get") or key not in node:
            return None
        node = node[key]
    return node


def _set_config_path(document, version: int) -> None:
    node = document
    *parents, leaf = REGISTRY_TABLE[version]
    for key in parents:
        if key not in node:
            node[key] = tomlkit.table(is_super_table=True)
        node = node[key]
    if leaf not in node:
        node[leaf] = tomlkit.table()
    node[leaf]["config_path"] = CONTAINERD_CERTS_DIR
