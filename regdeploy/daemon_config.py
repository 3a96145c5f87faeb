"""Docker's daemon.json: parse, merge the registry in (never overwrite), decide reload vs restart."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .changes import json_changes

if TYPE_CHECKING:
    from .host_state import HostState

# Keys dockerd re-reads on SIGHUP (`systemctl reload docker`): changing only these keeps every
# running container up. From Docker's "Configuration reload behavior" documentation.
RELOADABLE_KEYS = frozenset({
    "debug", "labels", "live-restore", "max-concurrent-downloads", "max-concurrent-uploads",
    "max-download-attempts", "default-runtime", "runtimes", "authorization-plugins",
    "insecure-registries", "registry-mirrors", "allow-nondistributable-artifacts",
    "shutdown-timeout", "features", "builder",
})

# Keys dockerd 20.10–27 accepts in daemon.json. Used to validate a file before applying it when
# dockerd has no `--validate` (added in 23.0; Debian 12 ships 20.10): dockerd refuses to start
# with an unknown key, and refusing before the restart is better than restoring after it.
KNOWN_KEYS = RELOADABLE_KEYS | frozenset({
    "allow-direct-routing", "api-cors-header", "authorization-plugins", "bip", "bip6", "bridge",
    "cdi-spec-dirs", "cgroup-parent", "containerd", "containerd-namespace",
    "containerd-plugin-namespace", "data-root", "default-address-pools", "default-cgroupns-mode",
    "default-gateway", "default-gateway-v6", "default-ipc-mode", "default-network-opts",
    "default-shm-size", "default-ulimits", "dns", "dns-opts", "dns-search", "exec-opts",
    "exec-root", "experimental", "fixed-cidr", "fixed-cidr-v6", "group", "host-gateway-ip",
    "host-gateway-ips", "hosts", "icc", "init", "init-path", "insecure-registries", "ip",
    "ip-forward", "ip-forward-no-drop", "ip-masq", "ip6tables", "iptables", "ipv6", "isolation",
    "log-driver", "log-format", "log-level", "log-opts", "min-api-version", "mtu", "no-new-privileges",
    "node-generic-resources", "oom-score-adjust", "pidfile", "proxies", "raw-logs", "seccomp-profile",
    "selinux-enabled", "storage-driver", "storage-opts", "swarm-default-advertise-addr", "tls",
    "tlscacert", "tlscert", "tlskey", "tlsverify", "userland-proxy", "userland-proxy-path",
    "userns-remap", "cluster-store", "cluster-store-opts", "cluster-advertise", "cpu-rt-period",
    "cpu-rt-runtime", "graph", "disable-legacy-registry", "features", "containerd-snapshotter",
    "http-proxy", "https-proxy", "no-proxy", "default-runtime",
})


# `docker info --format` template printing the registries dockerd treats as insecure, space-separated:
# how the apply script and the tests confirm the daemon (not just the file) trusts the registry.
INSECURE_REGISTRIES_FORMAT = (
    "{{range $name, $index := .RegistryConfig.IndexConfigs}}{{if not $index.Secure}}{{$name}} {{end}}{{end}}"
)


class DaemonConfigError(ValueError):
    pass


def parse(raw: str | None, where: str) -> dict[str, Any]:
    """The file's content as a dict: absent or blank is {}; anything else must be a JSON object."""
    if raw is None or raw.strip() == "":
        return {}
    try:
        value = json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
    except _DuplicateKey as exc:
        raise DaemonConfigError(
            f"{where} sets the key {exc.args[0]!r} twice; which one dockerd uses is not something to "
            "guess, and merging would drop the other: keep one by hand (regdeploy leaves the file untouched)"
        ) from None
    except json.JSONDecodeError as exc:
        raise DaemonConfigError(
            f"{where} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "fix it by hand: regdeploy leaves it untouched"
        ) from None
    if not isinstance(value, dict):
        raise DaemonConfigError(f"{where} must hold a JSON object, not {type(value).__name__}; "
                                "fix it by hand: regdeploy leaves it untouched")
    return value


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def check_mergeable(current: dict[str, Any], where: str, mirrors: tuple[str, ...] = ()) -> None:
    """Refuse a key regdeploy merges into whose value it cannot merge without losing what is there
    (Docker itself rejects such a file, so nothing that works today is refused)."""
    for key in ("insecure-registries",) + (("registry-mirrors",) if mirrors else ()):
        value = current.get(key)
        if value is None:
            continue  # absent or null: nothing to lose
        if not isinstance(value, list) or not all(isinstance(entry, str) for entry in value):
            raise DaemonConfigError(
                f"{where}: {key!r} must be a list of strings, like [\"host:5000\"], not {json.dumps(value)}; "
                "regdeploy merges its entry into that list and will not replace what is there. "
                "Fix the value by hand (regdeploy leaves the file untouched)"
            )


def merge(current: dict[str, Any], registry: str, mirrors: tuple[str, ...] = (), secure: bool = False,
          drop_mirrors: tuple[str, ...] = ()) -> dict[str, Any]:
    """`current` with `registry` in insecure-registries (with `secure`, a TLS registry: taken out of
    it) and `mirrors` in registry-mirrors, and `drop_mirrors` taken out of it (a pull-through cache
    regdeploy no longer runs: Docker would try it before every pull from Docker Hub).

    Every other key, and every other entry, is kept in place and in order (a list left empty stays,
    as `[]`). `current` must have passed check_mergeable().
    """
    merged = dict(current)
    if not secure:
        merged["insecure-registries"] = _append_missing(current.get("insecure-registries"), [registry])
    elif current.get("insecure-registries"):
        merged["insecure-registries"] = [e for e in current["insecure-registries"] if e != registry]
    if mirrors:
        merged["registry-mirrors"] = _append_missing(current.get("registry-mirrors"), list(mirrors))
    if any(m in (merged.get("registry-mirrors") or []) for m in drop_mirrors):
        merged["registry-mirrors"] = [m for m in merged["registry-mirrors"] if m not in drop_mirrors]
    return merged


def _append_missing(existing: list[str] | None, wanted: list[str]) -> list[str]:
    entries = list(existing or [])
    return entries + [w for w in wanted if w not in entries]


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def apply_action(old: dict[str, Any], new: dict[str, Any], daemon_trusts: bool = True) -> str | None:
    """None when nothing changed, "reload" when SIGHUP is enough, else "restart".

    `daemon_trusts` is whether the running dockerd already lists the registry: a file that has it
    while the daemon does not (a reload that never happened, e.g. an interrupted deploy) is reloaded.
    """
    changed = changed_keys(old, new)
    if not changed:
        return None if daemon_trusts else "reload"
    return "reload" if changed <= RELOADABLE_KEYS else "restart"


def unknown_keys(config: dict[str, Any]) -> list[str]:
    return sorted(key for key in config if key not in KNOWN_KEYS)


def render(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2) + "\n"


# dockerd checks a config file itself (`dockerd --validate`) from Docker 23.0 on; before that,
# regdeploy checks the keys against KNOWN_KEYS. Decided here only, from the version the fact read.
VALIDATE_SINCE = (23, 0)


def can_validate(dockerd_version: str | None) -> bool:
    """Whether this dockerd has `--validate`, from its package's version ("20.10.24+dfsg1-1+deb12u1",
    "5:27.3.1-1~debian.12~bookworm": the epoch is not the version)."""
    found = re.match(r"(?:\d+:)?(\d+)\.(\d+)", dockerd_version or "")
    return found is not None and (int(found.group(1)), int(found.group(2))) >= VALIDATE_SINCE


@dataclass(frozen=True)
class DaemonJsonPlan:
    action: str | None  # None (nothing to do), "reload" or "restart"
    content: str  # the file as it must be (rendered JSON)
    validate: bool  # run `dockerd --validate` on it before it goes live
    reason: str  # why (or why nothing)
    changes: tuple[str, ...] = ()  # key by key, as changes.json_changes says them


def plan_daemon_json(state: HostState, path: str, registry: str, mirrors: tuple[str, ...],
                     host_name: str, secure: bool = False, drop_mirrors: tuple[str, ...] = ()) -> DaemonJsonPlan:
    """What a host's daemon.json becomes and how Docker takes it, from the DockerHostState fact.
    `secure`: the registry serves TLS, so it must not be in insecure-registries (Docker would then
    accept any certificate from it). `drop_mirrors`: registry-mirrors entries to take out.

    Raises DaemonConfigError (naming host, file and fix) for anything regdeploy must not touch:
    the file is then left as it is and no host changes.
    """
    where = f"host {host_name!r}: {path}"
    conflicts = state.command_line_registries
    if conflicts:
        raise DaemonConfigError(
            f"{where}: dockerd already gets --insecure-registry on its command line "
            f"({conflicts[0]}); Docker refuses to start when an option is set in both places. "
            "Move those registries into daemon.json (or remove the flag) and run the deploy again."
        )
    kind, detail = state.daemon_json_kind, state.daemon_json_detail
    if kind == "symlink":
        raise DaemonConfigError(
            f"{where} is a symbolic link to {detail}; regdeploy replaces daemon.json atomically and would "
            "turn the link into a file. Set docker_daemon_json to the link's target (or make it a regular "
            "file) and run again; nothing was changed.")
    if kind == "other":
        raise DaemonConfigError(f"{where} is a {detail}, not a regular file; fix it by hand and run again; "
                                "nothing was changed.")
    if kind == "present" and not int(detail or "644", 8) & 0o400:
        raise DaemonConfigError(
            f"{where} has mode {int(detail, 8):03o}: even its owner may not read it, so someone locked it on "
            f"purpose. If Docker should use it, `chmod 644 {path}` and run again; nothing was changed.")
    current = parse(state.daemon_json, where)
    check_mergeable(current, where, mirrors + drop_mirrors)
    merged = merge(current, registry, mirrors, secure, drop_mirrors)

    # Whether the running daemon already treats the registry as the file says (insecure, or not).
    loaded = not state.active or state.trusted is None or (registry in state.trusted) != secure
    action = apply_action(current, merged, daemon_trusts=loaded)
    validate = can_validate(state.dockerd_version)
    if action is None:
        return DaemonJsonPlan(None, render(merged), validate,
                              f"neither {path} nor dockerd lists {registry} as insecure (it serves TLS)" if secure
                              else f"{path} lists {registry} and dockerd trusts it")
    if not validate:
        unknown = unknown_keys(merged)
        if unknown:
            raise DaemonConfigError(f"{where}: unknown daemon.json keys {unknown}: dockerd would refuse to start. "
                                    "Fix the file by hand; regdeploy leaves it untouched.")
    changed = sorted(changed_keys(current, merged))
    stale = (f"dockerd still treats {registry} as insecure (it has not loaded {path})" if secure
             else f"dockerd has not loaded {registry} from {path}")
    reason = stale if not changed else f"{', '.join(changed)} changed"
    return DaemonJsonPlan(action, render(merged), validate, reason, tuple(json_changes(current, merged)))


def write_before_install(state: HostState, plan: DaemonJsonPlan, installs_engine: bool) -> bool:
    """Whether the file goes in before Docker's packages, as the manual does it: the package's first
    start of dockerd then reads it, and no reload follows. Only where this run installs the engine, no
    dockerd runs and there is no file yet: nothing there to validate the file with or to keep, and
    undoing it is removing it. Every other host gets it after the install (apply-daemon-json), validated
    and with its previous file kept to roll back to."""
    return (installs_engine and plan.action is not None and not state.active
            and state.daemon_json_kind == "absent")
