"""What containerd's and Podman's files become so that they trust the registry: pure functions of
the settings and of what the host's DockerHostState fact read, table-tested with no host.

- containerd: `/etc/containerd/certs.d/<host:port>/hosts.toml` (plain HTTP, or the CA in TLS mode),
  read at each pull: changing it restarts nothing. `config_path` must point CRI (kubelet) at that
  directory: it is set in config.toml for both layouts (version 2: containerd 1.x, version 3: 2.x),
  every other setting kept (tomlkit keeps comments and order), and containerd restarts only when
  config.toml itself had to change. `ctr --hosts-dir` reads the directory directly.
- Podman (and CRI-O): a drop-in `/etc/containers/registries.conf.d/50-regdeploy.conf` with a v2
  `[[registry]]` entry and, in TLS mode, the CA in `/etc/containers/certs.d/<host:port>/ca.crt`;
  the distribution's registries.conf is never edited.
"""

from __future__ import annotations

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


class RuntimeConfigError(ValueError):
    """A runtime configuration regdeploy must not touch; the message names host, file and fix."""


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
class ContainerdConfigPlan:
    content: str | None  # config.toml as it must be; None: it stays as it is
    reason: str


def plan_containerd_config(current: str | None, containerd_major: int | None, where: str) -> ContainerdConfigPlan:
    """config.toml with CRI's registry `config_path` at CONTAINERD_CERTS_DIR. `current`: the file's
    text (None: absent), `containerd_major`: which layout a new file gets."""
    if current is None or not current.strip():
        version = 3 if (containerd_major or 1) >= 2 else 2
        document = tomlkit.document()
        document["version"] = version
        _set_config_path(document, version)
        return ContainerdConfigPlan(tomlkit.dumps(document), f"{CONTAINERD_CONFIG} is absent: written with "
                                                             f"config_path only (layout version {version})")
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
    registry = _get(document, REGISTRY_TABLE[version])
    found = registry.get("config_path") if registry is not None else None
    if found and str(found).rstrip("/") == CONTAINERD_CERTS_DIR:
        return ContainerdConfigPlan(None, f"config_path is {CONTAINERD_CERTS_DIR}")
    if found:
        raise RuntimeConfigError(
            f"{where}: {CONTAINERD_CONFIG} sets config_path = {str(found)!r}; regdeploy writes its hosts.toml in "
            f"{CONTAINERD_CERTS_DIR}. Point config_path there, or keep yours and write the registry's "
            "hosts.toml yourself (client_runtimes without containerd); nothing was changed")
    if registry is not None and ("mirrors" in registry or "configs" in registry):
        raise RuntimeConfigError(
            f"{where}: {CONTAINERD_CONFIG} configures registries with the old `mirrors`/`configs` tables, which "
            "containerd refuses together with config_path. Move them to hosts.toml files (containerd's "
            "docs/hosts.md) and deploy again; nothing was changed")
    _set_config_path(document, version)
    return ContainerdConfigPlan(tomlkit.dumps(document), f"config_path set to {CONTAINERD_CERTS_DIR} "
                                                         f"(layout version {version}), every other setting kept")


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
