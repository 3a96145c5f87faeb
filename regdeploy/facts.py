"""pyinfra facts regdeploy needs beyond pyinfra's own (which it uses wherever they fit)."""

from __future__ import annotations

import json

from pyinfra.api import FactBase

from .daemon_config import INSECURE_REGISTRIES_FORMAT
from .registry_plan import ASIDE_SUFFIX, MIGRATION_MARKER, MOVED_MARKER, SPEC_LABEL, ServerState, storage_of


# dpkg-query's answer, kept on each host with the mtime of dpkg's database it was read at (see
# templates/docker-host-state.sh.j2); /var/cache: deleting it loses nothing but one query's time.
DPKG_CACHE = "/var/cache/regdeploy/dpkg-query"
# Between the lines the fact sends as one output line ("joined=" lines and a file's content, join_lines
# in the template): pyinfra reads output a line at a time, ~35 us of the controller's CPU each, for
# every host. A unit separator: a file that holds one is sent line by line instead.
UNIT_SEPARATOR = "\x1f"


class DockerHostState(FactBase):
    """What regdeploy needs to know about a Docker host, in one round trip (pyinfra 3 gathers
    every fact anew, so a converged host costs its number of facts — here one):

    - `packages`: {name: installed?} for the packages asked about;
    - `active`, `enabled`: the docker service's state;
    - `command_line_registries`: where dockerd gets --insecure-registry on its command line (the
      running daemon, its unit and drop-ins, /etc/default/docker): dockerd refuses to start when
      daemon.json sets the same option;
    - `dockerd_version`: the installed docker-ce or docker.io package's version (None: neither),
      which decides how a new daemon.json is checked (daemon_config.can_validate);
    - `trusted`: the registries the running dockerd treats as insecure, asked only when daemon.json
      is not the file regdeploy last saw dockerd take (None: not asked, or no answer);
    - `daemon_json_kind`: present (a regular file), symlink, other (a directory, a fifo...) or absent,
      with `daemon_json_detail` its mode (present), link target (symlink) or file type (other);
    - `daemon_json`: the raw text of daemon.json, None unless it is a regular file;
    - `files`: {label: "SHA256 MODE OWNER"} for the files `checks` asks about that exist ("-" for the
      hash of a "lines" check), `lines`: {label: [line, ...]} the content of "lines" checks, and
      `stamps`: {label: "USER BCRYPT MODE"} for "stamp" checks whose credential is in place;
    - `versions`: {package: version} of the installed packages asked about (and containerd's);
    - `os`: /etc/os-release's ID, VERSION_ID and VERSION_CODENAME; `tools`: which of dockerd, podman
      and containerd are on the PATH (runtimes.resolve decides from them);
    - `registry` (asked on the registry server only): a registry_plan.ServerState, and `cache` the
      pull-through cache's (when it is configured).
    """

    def command(self, path: str, packages: tuple[str, ...] = (), lock: str = "", holder: str = "",
                lock_timeout: int = 0, registry: tuple | None = None, checks: tuple = (),
                cache: tuple | None = None, cache_name: str = "", dpkg_cache: str = DPKG_CACHE) -> str:
        """`lock`: the host's deploy lock file (empty: take none), `holder`: who takes it (shown to a
        deploy that has to wait), `lock_timeout`: how long to wait for it. `registry`, on the server:
        (config_path, data_dir, image, container, port) of the registry, read into `registry`; `cache`
        the same of the pull-through cache, read into `cache`; without one, `cache_name` is the
        container an earlier cache may have left (`cache_left`: whether regdeploy made it).
        `checks`: ("file", label, path), ("lines", label, path) or ("stamp", label, stamp path,
        credential path, text the credential must contain or "") for the secure modes' files.
        `dpkg_cache`: where the host keeps dpkg-query's answer between runs."""
        from .rendering import render

        servers = [(prefix, (*spec[:4], int(spec[4]))) for prefix, spec in (("registry", registry), ("cache", cache))
                   if spec]
        return render("docker-host-state.sh.j2", path=path, packages=packages, lock=lock, holder=holder,
                      checks=checks,
                      lock_timeout=int(lock_timeout), insecure_registries_format=INSECURE_REGISTRIES_FORMAT,
                      servers=servers, also=cache_name, marker=MIGRATION_MARKER, moved_marker=MOVED_MARKER,
                      aside_suffix=ASIDE_SUFFIX, dpkg_cache=dpkg_cache,
                      spec_label=SPEC_LABEL, unit_separator=UNIT_SEPARATOR)

    def process(self, output: list[str]) -> dict:
        state = {"packages": {}, "active": False, "enabled": False, "command_line_registries": [],
                 "trusted": None, "daemon_json": None, "daemon_json_kind": "absent", "daemon_json_detail": "",
                 "lock": None, "dockerd_version": None, "registry": None, "files": {}, "lines": {}, "stamps": {},
                 "versions": {}, "os": {}, "tools": set(), "apparmor": False, "cache": None}
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
                state["lines"][key[len("lines."):]] = split_joined(value)
            elif key.startswith("line."):  # a file that holds a separator: line by line
                state["lines"].setdefault(key[len("line."):], []).append(value)
            elif key == "daemon.json.joined":
                joined = "\n".join(split_joined(value))
            elif key == "dpkg":
                # "NAME install ok installed VERSION" (other states: not installed, config-files...).
                name, _, rest = value.strip().partition(" ")
                installed = rest.startswith("install ok installed ")
                state["packages"][name] = installed
                if installed:
                    state["versions"][name] = rest.rsplit(" ", 1)[1]
                if installed and name in ("docker-ce", "docker.io") and not state["dockerd_version"]:
                    state["dockerd_version"] = rest.rsplit(" ", 1)[1]
            elif key == "os":
                release_id, version_id, codename = (value.split(" ") + ["", "", ""])[:3]
                state["os"] = {"ID": release_id, "VERSION_ID": version_id, "VERSION_CODENAME": codename}
            elif key == "apparmor":
                state["apparmor"] = value.strip() == "Y"
            elif key == "tool":
                state["tools"].add(value.strip())
            elif key == "ActiveState":
                state["active"] = value.strip() == "active"
            elif key == "UnitFileState":
                state["enabled"] = value.strip() == "enabled"
            elif key == "flag":
                state["command_line_registries"].append(value.strip())
            elif key == "lock":
                # "held N" (after waiting N s) or "busy N HOLDER": nothing else follows then.
                status, _, rest = value.partition(" ")
                waited, _, holder = rest.partition(" ")
                state["lock"] = {"held": status == "held", "waited": int(waited or 0), "holder": holder}
            elif key == "trusted":
                # "(confirmed)": the file is the one dockerd was seen taking; "(unknown)": no answer.
                state["trusted"] = None if value.strip() in ("(unknown)", "(confirmed)") else value.split()
            elif key == "daemon.json":
                kind, _, detail = value.strip().partition(" ")
                if kind == "present" and not detail:  # its mode: from the stat
                    detail = stats.get(paths.get("daemon.json", ("", ""))[1], "").partition(" ")[0]
                state["daemon_json_kind"], state["daemon_json_detail"] = kind, detail
                if kind == "present":
                    state["daemon_json"] = joined if joined is not None else "\n".join(output[index + 1:])
                break
        for label, (kind, name) in paths.items():
            found = stats.get(name)  # None: gone between the shell's test and the stat (absent)
            if found is None:
                continue
            if kind == "file" and name in sums:
                state["files"][label] = f"{sums[name]} {found}"
            elif kind == "lines":
                state["files"][label] = f"- {found}"
            elif kind == "stamp" and label in stamp_lines:
                state["stamps"][label] = f"{stamp_lines[label]} {found.partition(' ')[0]}"
        for prefix, lines in server_lines.items():
            state[prefix] = parse_server_state(lines)
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


class RegistryCatalog(FactBase):
    """Every repository in the registry with its tags ({name: [tags]}), read on the registry server
    over loopback with pagination; None when the registry does not answer (not deployed yet).

    The testinfra suite runs the same command and `parse()` so both see the registry alike.
    """

    def requires_command(self, *args, **kwargs) -> str:
        return "curl"

    def command(self, port: int, api: tuple[str, str, str], page_size: int = 100) -> str:
        """`api`: registry_files.loopback_api() as a tuple (base, connect, options)."""
        from .registry_files import LoopbackApi
        from .rendering import render

        return render("registry-catalog.sh.j2", port=int(port), api=LoopbackApi(*api), page_size=int(page_size))

    def process(self, output: list[str]) -> dict[str, list[str]] | None:
        return parse_catalog_lines(output)


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
