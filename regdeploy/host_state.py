"""What a host is, as regdeploy reads it: the typed result of facts.DockerHostState and the parsers
of the scripts' output. Pure (no pyinfra): the decisions take these records, tests build them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .pki import sha256
from .registry_plan import ServerState, storage_of

# Between the lines the fact sends as one output line ("joined=" lines and a file's content, join_lines
# in the template): pyinfra reads output a line at a time, in the controller's CPU, for every line of
# every host. A unit separator: a file that holds one is sent line by line instead.
UNIT_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class Lock:
    """The host's deploy lock as the fact found it: taken (`held`, after `waited` seconds), or
    busy with `holder` (then the fact read nothing else)."""

    held: bool
    waited: int = 0
    holder: str = ""


@dataclass
class HostState:
    """What regdeploy needs to know about a host (facts.DockerHostState's docstring says how each
    field is read). Built by parse_host_state; tests build it directly."""

    packages: dict[str, bool] = field(default_factory=dict)
    active: bool = False
    enabled: bool = False
    command_line_registries: list[str] = field(default_factory=list)
    trusted: list[str] | None = None
    daemon_json: str | None = None
    daemon_json_kind: str = "absent"
    daemon_json_detail: str = ""
    lock: Lock | None = None
    dockerd_version: str | None = None
    registry: ServerState | None = None
    files: dict[str, str] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)
    stamps: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    os: dict[str, str] = field(default_factory=dict)
    tools: set[str] = field(default_factory=set)
    running: set[str] = field(default_factory=set)  # the "running" checks' units that are active
    enabled_units: set[str] = field(default_factory=set)  # the "enabled" checks' units that start at boot
    apparmor: bool = False
    cache: ServerState | None = None


def file_matches(found: str | None, content: str, mode: str) -> bool:
    """Whether the fact's "SHA256 MODE OWNER" for a file (HostState.files) says it holds `content`
    with `mode`, owned by root."""
    return found == f"{sha256(content)} {mode} root"


def parse_host_state(output: list[str]) -> HostState:
    """The fact's output (templates/facts/docker-host-state.sh.j2) as a HostState."""
    state = HostState()
    server_lines: dict[str, list[str]] = {}
    # The checks' files as the shell reports them: {label: (kind, path)}, then one find (stat=
    # lines: mode, owner) and one sha256sum for them all, joined here by path.
    paths: dict[str, tuple[str, str]] = {}
    stats: dict[str, str] = {}
    sums: dict[str, str] = {}
    stamp_lines: dict[str, str] = {}
    joined = None  # daemon.json's content, when it came on one line
    output = unjoin(output)
    for index, line in enumerate(output):
        if line.startswith("SHA256 (") and ") = " in line:  # sha256sum --tag
            name, _, digest = line[len("SHA256 ("):].rpartition(") = ")
            sums[name] = digest.strip()
            continue
        key, _, value = line.partition("=")
        if key.startswith(("registry.", "cache.")):
            prefix, _, rest = line.partition(".")
            server_lines.setdefault(prefix, []).append(rest)
        elif key.startswith("path."):
            kind, _, name = value.partition(" ")
            paths[key[len("path."):]] = (kind, name)
        elif key == "stat":
            mode, _, rest = value.partition(" ")
            owner, _, name = rest.partition(" ")
            stats[name] = f"{mode} {owner}"
        elif key.startswith("stamp."):
            stamp_lines[key[len("stamp."):]] = value.strip()
        elif key.startswith("lines."):  # every line of the file, each after a separator
            state.lines[key[len("lines."):]] = split_joined(value)
        elif key.startswith("line."):  # a file that holds a separator: line by line
            state.lines.setdefault(key[len("line."):], []).append(value)
        elif key == "daemon.json.joined":
            joined = "\n".join(split_joined(value))
        elif key == "dpkg":
            # "NAME install ok installed VERSION" (other states: not installed, config-files...).
            name, _, rest = value.strip().partition(" ")
            installed = rest.startswith("install ok installed ")
            state.packages[name] = installed
            if installed:
                state.versions[name] = rest.rsplit(" ", 1)[1]
            if installed and name in ("docker-ce", "docker.io") and not state.dockerd_version:
                state.dockerd_version = rest.rsplit(" ", 1)[1]
        elif key == "os":
            release_id, version_id, codename = (value.split(" ") + ["", "", ""])[:3]
            state.os = {"ID": release_id, "VERSION_ID": version_id, "VERSION_CODENAME": codename}
        elif key == "apparmor":
            state.apparmor = value.strip() == "Y"
        elif key == "tool":
            state.tools.add(value.strip())
        elif key == "running":
            state.running.add(value.strip())
        elif key == "enabled":
            state.enabled_units.add(value.strip())
        elif key == "ActiveState":
            state.active = value.strip() == "active"
        elif key == "UnitFileState":
            state.enabled = value.strip() == "enabled"
        elif key == "flag":
            state.command_line_registries.append(value.strip())
        elif key == "lock":
            # "held N" (after waiting N s) or "busy N HOLDER": nothing else follows then.
            status, _, rest = value.partition(" ")
            waited, _, holder = rest.partition(" ")
            state.lock = Lock(held=status == "held", waited=int(waited or 0), holder=holder)
        elif key == "trusted":
            # "(confirmed)": the file is the one dockerd was seen taking; "(unknown)": no answer.
            state.trusted = None if value.strip() in ("(unknown)", "(confirmed)") else value.split()
        elif key == "daemon.json":
            kind, _, detail = value.strip().partition(" ")
            if kind == "present" and not detail:  # its mode: from the stat
                detail = stats.get(paths.get("daemon.json", ("", ""))[1], "").partition(" ")[0]
            state.daemon_json_kind, state.daemon_json_detail = kind, detail
            if kind == "present":
                state.daemon_json = joined if joined is not None else "\n".join(output[index + 1:])
            break
    for label, (kind, name) in paths.items():
        found = stats.get(name)  # None: gone between the shell's test and the stat (absent)
        if found is None:
            continue
        if kind == "file" and name in sums:
            state.files[label] = f"{sums[name]} {found}"
        elif kind == "lines":
            state.files[label] = f"- {found}"
        elif kind == "stamp" and label in stamp_lines:
            state.stamps[label] = f"{stamp_lines[label]} {found.partition(' ')[0]}"
    if "registry" in server_lines:
        state.registry = parse_server_state(server_lines["registry"])
    if "cache" in server_lines:
        state.cache = parse_server_state(server_lines["cache"])
    return state


def unjoin(output: list[str]) -> list[str]:
    """The fact's output with each "joined=" line (lines the shell printed as one, to spare pyinfra's
    line-by-line reading) back as its lines; daemon.json's verbatim content, after its line, as it is."""
    lines: list[str] = []
    for index, line in enumerate(output):
        if line.startswith("daemon.json="):
            return lines + output[index:]
        lines.extend(split_joined(line) if line.startswith("joined=") else (line,))
    return lines


def split_joined(value: str) -> list[str]:
    """The lines the shell joined into one, each after a separator; what comes before the first
    separator (the key) is not one of them."""
    return value.split(UNIT_SEPARATOR)[1:]


def parse_catalog_lines(lines: list[str]) -> dict[str, list[str]] | None:
    if lines and lines[0].strip() == "unreachable":
        return None
    catalog: dict[str, list[str]] = {}
    for line in lines:
        kind, _, rest = line.strip().partition(" ")
        if kind == "repository":
            catalog.setdefault(rest, [])
        elif kind == "tag":
            name, _, tag = rest.partition(" ")
            catalog.setdefault(name, []).append(tag)
    return catalog


def parse_server_state(lines: list[str]) -> ServerState:
    values: dict[str, str] = {}
    holders: list[str] = []
    container = None
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "container-json":
            container = json.loads(value)  # the container's `docker inspect` object, on one line
        elif key == "holder":
            holders.append(value)
        else:
            values[key] = value

    def number(key: str) -> int:
        return int(values.get(key) or 0)

    # The figures about the container's storage count only if the host measured the path Docker gives.
    storage = storage_of(container) if container is not None else None
    unread = storage.source if storage and storage.kind in ("bind", "volume") \
        and values.get("storage_source") != storage.source else ""

    return ServerState(
        config_sha256=values.get("config") or None,
        data_dir=values.get("data_dir", "absent"),
        image_id=values.get("image") or None,
        port_holders=tuple(holders),
        aside_left=values.get("aside_left") == "yes",
        cache_left=values.get("cache_left") == "yes",
        container=container,
        storage_entries=number("storage_entries"),
        storage_repositories=number("storage_repositories"),
        storage_bytes=number("storage_bytes"),
        storage_unread=unread,
    )
