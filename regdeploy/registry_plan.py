"""What to do with the registry container: a pure decision over what the server reports.

`plan_registry(desired, observed)` compares the container the deploy wants with the one the
server runs (its `docker inspect`, read by the server's DockerHostState fact) and returns a plan: nothing,
start, create, recreate or adopt; why, field by field (old -> new); and whether the registry's data
must move first. registry_run.run_script turns the plan into one script (tasks/registry_server.py
runs it); the tests feed inspect fixtures in and check plans out, with no host.

Data safety rules decided here:
- a container of another name publishing the registry port stops the deploy (nothing changed);
- a container with the registry's name but no regdeploy label is adopted, never removed: it is
  stopped, renamed and kept (restart policy "no") so its volume stays referenced;
- storage that lives anywhere but `registry_data_dir` and holds data is copied there and verified
  before the new container starts; the old volume or directory is never deleted;
- a target directory that already holds other data is refused, never merged into.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

SPEC_LABEL = "regdeploy.spec-sha256"
STORAGE_TARGET = "/var/lib/registry"  # where the registry image keeps its data (its VOLUME)
# Where the container finds regdeploy's config.yml, given to it as its command: registry:2 reads
# this path by default, registry:3 (distribution v3) /etc/distribution/config.yml, and both serve
# the path their command names. So the image's default never decides which config is in effect.
CONFIG_TARGET = "/etc/docker/registry/config.yml"
CONTAINER_PORT = 5000  # the registry's own listen address inside the container (config.yml)
DEBUG_PORT = 5001  # its debug endpoint: /debug/health, Prometheus /metrics (config.yml's http.debug)
# Marker regdeploy writes into registry_data_dir while it copies data there: a directory holding it
# has an unfinished copy of regdeploy's own, which the next run may clear and redo.
MIGRATION_MARKER = ".regdeploy-migration-incomplete"
# Written into registry_data_dir once its images were copied into the S3 bucket and served from there:
# the directory is then a stale copy (the fact reports data_dir=moved), never copied again.
MOVED_MARKER = ".regdeploy-moved-to-s3"
# Our previous container while its replacement starts (removed once the new one answers).
ASIDE_SUFFIX = ".regdeploy-old"
# An adopted container (not regdeploy's) is kept, stopped, under this name plus a timestamp.
KEPT_SUFFIX = "-pre-regdeploy"


class PlanError(Exception):
    """The deploy must stop on this server before changing anything."""


@dataclass(frozen=True)
class DesiredContainer:
    name: str
    host_port: int
    data_dir: str
    config_path: str
    config_target: str
    restart_policy: str
    spec_hash: str
    # (host directory, container directory) mounted read-only: TLS files, htpasswd (secure modes).
    extra_mounts: tuple[tuple[str, str], ...] = ()
    # The container's command: the config it serves. The official images (registry:2 and 3) take a
    # config path as their command ("registry serve <path>") but default to different paths.
    command: tuple[str, ...] = ()
    # Where the debug endpoint (container port DEBUG_PORT) is published: "PORT", or "127.0.0.1:" (an
    # ephemeral loopback port); empty: not published (containers made before it existed).
    debug_binding: str = ""

    @property
    def mounts(self) -> dict[str, tuple[str, str, bool]]:
        """{destination: (type, source, writable)} as `docker inspect` reports Mounts."""
        return {STORAGE_TARGET: ("bind", self.data_dir, True),
                self.config_target: ("bind", self.config_path, False),
                **{target: ("bind", source, False) for source, target in self.extra_mounts}}

    @property
    def ports(self) -> dict[str, list[str]]:
        ports = {f"{CONTAINER_PORT}/tcp": [str(self.host_port)]}
        if self.debug_binding:
            ports[f"{DEBUG_PORT}/tcp"] = [self.debug_binding]
        return ports


@dataclass(frozen=True)
class ServerState:
    """The registry side of the server's DockerHostState fact: its files, image, container and port."""

    config_sha256: str | None = None
    data_dir: str = "absent"  # absent | empty | partial (our unfinished copy) | moved (to S3) | data
    image_id: str | None = None
    port_holders: tuple[str, ...] = ()
    aside_left: bool = False  # a previous run's `<name>.regdeploy-old` still exists
    cache_left: bool = False  # a pull-through cache regdeploy made (the fact's `cache_name`) is there
    container: dict[str, Any] | None = None
    # The current container's storage when it is not `registry_data_dir` (else None):
    storage_entries: int = 0
    storage_repositories: int = 0
    storage_bytes: int = 0
    # The container's storage path when the host's shell read another one (so the three figures above
    # are not that storage's): nothing may be decided about its data then.
    storage_unread: str = ""


@dataclass(frozen=True)
class Storage:
    """Where a container keeps /var/lib/registry."""

    kind: str  # bind | volume | none | tmpfs ...
    source: str  # host path (bind) or the volume's directory
    volume: str = ""  # volume name (anonymous volumes have a 64-hex name)

    def describe(self) -> str:
        if self.kind == "volume":
            anonymous = re.fullmatch(r"[0-9a-f]{64}", self.volume) is not None
            return f"{'anonymous ' if anonymous else ''}volume {_short(self.volume)}"
        return self.source if self.kind == "bind" else f"{self.kind} storage"

    def removal_hint(self) -> str:
        """How the operator frees this storage once they no longer need it (regdeploy never does)."""
        return f"docker volume rm {self.volume}" if self.kind == "volume" else f"rm -r {self.source}"


@dataclass(frozen=True)
class Migration:
    source: Storage
    target: str
    repositories: int
    bytes: int
    redo_partial: bool  # the target holds an unfinished copy of ours: clear it first

    def describe(self) -> str:
        plural = "y" if self.repositories == 1 else "ies"
        return (f"move {self.repositories} repositor{plural} ({_size(self.bytes)}) "
                f"from {self.source.describe()} to {self.target}")


@dataclass(frozen=True)
class RegistryPlan:
    action: str  # none | start | create | recreate | adopt
    reasons: tuple[str, ...] = ()
    migration: Migration | None = None
    # The running container before the change: its restart policy to put back on a rollback.
    previous_restart: str = ""
    clear_aside: bool = False
    # registry_storage=s3 on a server whose registry_data_dir holds images: copy them into the (empty)
    # bucket and verify them through the API before the registry on the bucket starts.
    to_bucket: str = ""  # the data directory to copy, empty: none

    @property
    def adopts(self) -> bool:
        return self.action == "adopt"

    def summary(self, name: str) -> str:
        """One line for the operation's name: what and why (shown by pyinfra, --dry included)."""
        if self.action == "adopt":
            head = f"Adopt container {name!r} (not created by regdeploy)"
        elif self.action == "create":
            head = f"Run the registry container {name!r}"
        elif self.action == "start":
            head = f"Start the registry container {name!r}"
        else:
            head = f"Recreate the registry container {name!r}"
        details = list(self.reasons)
        if self.migration:
            details.append(self.migration.describe())
        if self.to_bucket:
            details.append(f"copy the images in {self.to_bucket} into the S3 bucket")
        return head + (f": {'; '.join(details)}" if details else "")


    def notice(self, name: str, kept_as: str) -> str | None:
        """What the operator must know afterwards: what regdeploy kept, where, how to remove it."""
        parts = []
        if self.adopts:
            parts.append(f"the container {name!r} found there is kept as {kept_as!r} (stopped, restart policy no)")
        if self.migration:
            source = self.migration.source
            where = source.describe() + ("" if source.describe() == source.source else f" ({source.source})")
            parts.append(f"the previous data stays in {where}")
        if self.to_bucket:
            parts.append(f"the images copied into the bucket stay in {self.to_bucket} too (marked {MOVED_MARKER})")
        if not parts:
            return None
        removal = ([f"docker rm {kept_as}"] if self.adopts else []) + (
            [self.migration.source.removal_hint()] if self.migration else []) + (
            [f"rm -r {self.to_bucket}/docker"] if self.to_bucket else [])
        return ("; ".join(parts) + ". regdeploy never deletes either; once you no longer need them: "
                + " && ".join(removal))


def _short(value: str) -> str:
    """Long hex ids (volume names, image ids) cut to 12 digits, as `docker ps` shows them."""
    found = re.fullmatch(r"(sha256:)?([0-9a-f]{32,})", value)
    return f"{found.group(1) or ''}{found.group(2)[:12]}…" if found else value


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def storage_of(container: dict[str, Any]) -> Storage:
    for mount in container.get("Mounts") or []:
        if mount.get("Destination") == STORAGE_TARGET:
            return Storage(kind=mount.get("Type", ""), source=mount.get("Source", ""),
                           volume=mount.get("Name", "") or "")
    return Storage(kind="none", source="")


def restart_policy_of(container: dict[str, Any]) -> str:
    policy = (container.get("HostConfig") or {}).get("RestartPolicy") or {}
    name = policy.get("Name") or "no"
    retries = policy.get("MaximumRetryCount") or 0
    return f"{name}:{retries}" if name == "on-failure" and retries else name


# Host addresses that mean "every address", as `-p PORT:PORT` publishes.
_ANY_ADDRESS = ("", "0.0.0.0", "::")


def _ports_of(container: dict[str, Any]) -> dict[str, list[str]]:
    bindings = (container.get("HostConfig") or {}).get("PortBindings") or {}
    return {port: sorted(str(b.get("HostPort")) if (b.get("HostIp") or "") in _ANY_ADDRESS
                         else f"{b.get('HostIp')}:{b.get('HostPort')}" for b in (entries or []))
            for port, entries in bindings.items()}


def _mounts_of(container: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    return {m.get("Destination"): (m.get("Type"), m.get("Source") if m.get("Type") == "bind"
                                   else (m.get("Name") or m.get("Source")), bool(m.get("RW")))
            for m in container.get("Mounts") or []}


def _show_ports(ports: dict[str, list[str]]) -> str:
    # "127.0.0.1:" is an ephemeral port on loopback: shown as 127.0.0.1:*.
    shown = [f"{host}{'*' if host.endswith(':') else ''}->{port.split('/')[0]}"
             for port, hosts in sorted(ports.items()) for host in hosts]
    return ", ".join(shown) or "none"


def _show_mount(mount: tuple[str, str, bool] | None) -> str:
    if mount is None:
        return "none"
    kind, source, writable = mount
    return f"{kind} {_short(source)}{'' if writable else ' (ro)'}"


def drift(desired: DesiredContainer, container: dict[str, Any], image_id: str | None,
          config_sha256: str | None, config_text_sha256: str) -> list[str]:
    """Every way the live container differs from the desired one, as "field: old -> new".

    The live container is compared field by field (a `docker update` or a hand-made container
    keeps a matching label but not a matching spec), then the label, which covers what inspect
    cannot show (config.yml's content as it was, the image archive's hash).
    """
    reasons = []
    policy = restart_policy_of(container)
    if policy != desired.restart_policy:
        reasons.append(f"restart policy: {policy} -> {desired.restart_policy}")
    ports = _ports_of(container)
    if ports != desired.ports:
        reasons.append(f"ports: {_show_ports(ports)} -> {_show_ports(desired.ports)}")
    live_mounts, wanted_mounts = _mounts_of(container), desired.mounts
    for target in sorted(live_mounts.keys() | wanted_mounts.keys()):
        if live_mounts.get(target) != wanted_mounts.get(target):
            reasons.append(f"mount {target}: {_show_mount(live_mounts.get(target))} -> "
                           f"{_show_mount(wanted_mounts.get(target))}")
    command = tuple((container.get("Config") or {}).get("Cmd") or ())
    if desired.command and command != desired.command:
        reasons.append(f"command: {' '.join(command) or '(none)'} -> {' '.join(desired.command)} "
                       "(the config the registry reads)")
    if image_id and container.get("Image") != image_id:
        reasons.append(f"image: {_short(container.get('Image') or '?')} -> {_short(image_id)}")
    if config_sha256 != config_text_sha256:
        reasons.append("config.yml: differs from the rendered template (edited by hand, or changed)")
    label = ((container.get("Config") or {}).get("Labels") or {}).get(SPEC_LABEL)
    if not reasons and label != desired.spec_hash:
        # Nothing visible moved: what moved is only in the hash (e.g. a new image archive).
        reasons.append("spec: the image archive or another setting changed (spec hash differs)")
    return reasons


def plan_registry(desired: DesiredContainer, observed: ServerState, config_text_sha256: str) -> RegistryPlan:
    """The plan for the registry container; raises PlanError when the deploy must not go on."""
    holders = [h for h in observed.port_holders if h not in (desired.name, desired.name + ASIDE_SUFFIX)]
    if holders:
        raise PlanError(
            f"port {desired.host_port} is already published by container {holders[0]!r}, which is not "
            f"the registry container {desired.name!r}; nothing was changed. If it is your registry, set "
            f"registry_container_name={holders[0]!r} so regdeploy adopts it (its data is kept); otherwise "
            "stop it or choose another registry_port."
        )
    container = observed.container
    if container is None:
        reasons = ("an interrupted earlier deploy left the previous container aside",) if observed.aside_left else ()
        return RegistryPlan(action="create", reasons=reasons, clear_aside=observed.aside_left)

    labels = (container.get("Config") or {}).get("Labels") or {}
    foreign = SPEC_LABEL not in labels
    running = bool((container.get("State") or {}).get("Running"))
    migration = _migration(desired, observed, storage_of(container))
    previous_restart = restart_policy_of(container)

    if foreign:
        image = (container.get("Config") or {}).get("Image") or "?"
        found = f"found image {image}, storage in {storage_of(container).describe()}"
        return RegistryPlan(action="adopt", reasons=(found,), migration=migration,
                            previous_restart=previous_restart, clear_aside=observed.aside_left)

    drifted = drift(desired, container, observed.image_id, observed.config_sha256, config_text_sha256)
    if observed.aside_left:
        drifted.append("an interrupted earlier deploy left the previous container aside")
    if drifted:
        return RegistryPlan(action="recreate", reasons=tuple(drifted), migration=migration,
                            previous_restart=previous_restart, clear_aside=observed.aside_left)
    if not running:
        return RegistryPlan(action="start", reasons=("it is stopped",), previous_restart=previous_restart)
    return RegistryPlan(action="none")


def _migration(desired: DesiredContainer, observed: ServerState, storage: Storage) -> Migration | None:
    """The data move a replacement needs, if any; PlanError where moving it is not safe."""
    if storage.kind == "bind" and storage.source.rstrip("/") == desired.data_dir.rstrip("/"):
        return None  # already there
    if storage.kind not in ("bind", "volume"):
        if storage.kind == "none":
            # No mount: the data (if any) is in the container's own layer, which a recreate drops.
            raise PlanError(
                f"container {desired.name!r} keeps {STORAGE_TARGET} in its own writable layer (no volume "
                f"or bind mount), so regdeploy cannot move its data safely; nothing was changed. Copy it "
                f"out (`docker cp {desired.name}:{STORAGE_TARGET}/. {desired.data_dir}/`) and rename or "
                "remove the container, then run the deploy again."
            )
        raise PlanError(f"container {desired.name!r} keeps {STORAGE_TARGET} on {storage.kind} storage, "
                        "which does not survive a stop; nothing was changed. Move its data yourself first.")
    if observed.storage_unread:
        raise PlanError(
            f"container {desired.name!r} keeps {STORAGE_TARGET} in {storage.describe()}, but the server's fact "
            "could not read that path from Docker's answer, so how much data is there is unknown; nothing was "
            "changed. Rename the directory (or volume) to a plain path and run the deploy again.")
    if observed.storage_entries == 0:
        return None  # nothing stored there: nothing to move
    if observed.data_dir == "data":
        raise PlanError(
            f"the registry's data would move from {storage.describe()} to {desired.data_dir}, but "
            f"{desired.data_dir} already holds other data; regdeploy does not merge registries, and nothing "
            f"was changed. Empty {desired.data_dir}, or point registry_data_dir at "
            f"{storage.source if storage.kind == 'bind' else 'an empty directory'}."
        )
    return Migration(source=storage, target=desired.data_dir, repositories=observed.storage_repositories,
                     bytes=observed.storage_bytes, redo_partial=observed.data_dir == "partial")


def plan_storage(storage: str, data_dir: str, observed: ServerState, plan: RegistryPlan) -> RegistryPlan:
    """`plan` where the registry's storage kind changes: a registry_data_dir holding images, on its way
    to S3, is copied into the bucket first (the plan's `to_bucket`); PlanError where images would be left
    behind (a copy elsewhere than registry_data_dir, an unfinished one) or a stale copy would be served
    again (back to the disk after a move to S3)."""
    if storage == "filesystem":
        if observed.data_dir == "moved":
            raise PlanError(
                f"{data_dir} holds images that were copied into the S3 bucket ({MOVED_MARKER}): a registry on it "
                "would serve that old copy without what was pushed since. Copy the bucket's docker/ tree back "
                f"into an empty {data_dir} first (or point registry_data_dir at one). Nothing was changed")
        return plan
    if plan.migration or observed.data_dir == "partial":
        found = plan.migration.source.describe() if plan.migration else f"an unfinished copy in {data_dir}"
        raise PlanError(
            f"registry_storage=s3, but {found} holds a registry's images: the registry on the bucket would not "
            "serve them. Deploy once with registry_storage=filesystem (regdeploy moves them into "
            f"{data_dir} and verifies them), then switch to s3 (regdeploy copies {data_dir} into the bucket). "
            "Nothing was changed")
    if observed.data_dir == "data" and plan.action in ("create", "recreate", "adopt"):
        return dataclasses.replace(plan, to_bucket=data_dir)
    return plan
