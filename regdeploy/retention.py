"""Retention (`registry_retention`, `regdeploy prune`): which tags and manifests go, decided once from
what the server's storage holds. Pure: no pyinfra, no host; table-tested.

A rule is `PATTERN [keep=N] [within=DURATION] [pulled=DURATION] [protect=GLOB,...]`, e.g.
`* keep=10 protect=latest,v*` or `ci/* keep=3 within=14d pulled=30d`. Each repository follows the
first rule whose PATTERN matches it (registry_access's patterns: `*` matches anything, `/` included);
a repository no rule matches is never touched. Under a rule a tag stays when any of these holds:
- it matches a `protect` glob (`*` and `?` within the tag);
- it is one of the `keep` newest tags of its repository, by push time;
- it was pushed within `within` (`30d`, `12h`, `2w`, `90m`: minutes);
- it, or the manifest it points at, was pulled within `pulled`: the registry's access log says so
  (every replica's). When a log does not reach back that far, or cannot be read, every tag under the
  rule stays: a pull nobody can see is assumed.
Every other tag goes. A manifest goes with its last tag, unless a tag that stays, or an image index
that stays, still refers to it (so an index keeps its platforms).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field

# This file also runs alone on the registry server, for the scheduled prune (registry_gc_schedule):
# Debian's python3 and token_service.py beside it, which has the repository patterns' one reading.
try:
    from .token_service import pattern_matches
except ImportError:
    from token_service import pattern_matches  # type: ignore[no-redef,import-not-found]

# What the scheduled prune runs with on the server (this file, by Debian's python3).
PACKAGES = ("python3",)
DURATION = re.compile(r"([1-9][0-9]*)([mhdw])")
SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}  # m: minutes
TAG_GLOB = re.compile(r"[A-Za-z0-9_.*?\[\]!-]+")
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


class RetentionError(ValueError):
    """A rule that cannot be what the operator meant; the message names it and why."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    keep: int | None = None  # the newest N tags stay
    within: int | None = None  # seconds: tags pushed more recently stay
    protect: tuple[str, ...] = ()
    pulled: int | None = None  # seconds: tags (or their manifests) pulled more recently stay

    def __str__(self) -> str:
        parts = [self.pattern]
        if self.keep is not None:
            parts.append(f"keep={self.keep}")
        if self.within is not None:
            parts.append(f"within={self.within}s")
        if self.pulled is not None:
            parts.append(f"pulled={self.pulled}s")
        if self.protect:
            parts.append(f"protect={','.join(self.protect)}")
        return " ".join(parts)


def parse_rule(text: str) -> Rule:
    from .access import pattern_problem  # on the controller: the server gets the rules parsed
    pattern, *options = text.split()
    problem = pattern_problem(pattern)
    if problem:
        raise RetentionError(f"registry_retention rule {text!r}: the pattern {pattern!r} {problem}")
    values: dict = {}
    for option in options:
        key, _, value = option.partition("=")
        if key in values:
            raise RetentionError(f"registry_retention rule {text!r} gives {key} twice")
        if key == "keep" and value.isdigit():
            values["keep"] = int(value)
        elif key in ("within", "pulled") and DURATION.fullmatch(value):
            number, unit = DURATION.fullmatch(value).groups()  # type: ignore[union-attr]
            values[key] = int(number) * SECONDS[unit]
        elif key == "protect" and value and all(TAG_GLOB.fullmatch(g) for g in value.split(",")):
            values["protect"] = tuple(value.split(","))
        else:
            raise RetentionError(f"registry_retention rule {text!r}: {option!r} is not keep=N, within=DURATION "
                                 "(e.g. 30d, 12h, 2w), pulled=DURATION or protect=GLOB[,GLOB...] (e.g. latest,v*)")
    if "keep" not in values and "within" not in values:
        raise RetentionError(f"registry_retention rule {text!r} says neither keep=N nor within=DURATION: it would "
                             "delete every tag it does not protect. Give keep=0 if that is what you mean")
    return Rule(pattern, **values)


def parse_rules(texts) -> tuple[Rule, ...]:
    """Every rule, or one RetentionError naming every bad one."""
    from .access import parse_each
    return parse_each(texts, parse_rule, RetentionError)


def rules_json(rules: tuple[Rule, ...]) -> str:
    """The parsed rules as the server's scheduled prune reads them (rules_from_json)."""
    return json.dumps([asdict(rule) for rule in rules], indent=1) + "\n"


def rules_from_json(text: str) -> tuple[Rule, ...]:
    return tuple(Rule(r["pattern"], r["keep"], r["within"], tuple(r["protect"]), r.get("pulled"))
                 for r in json.loads(text))


def pulls_window(rules: tuple[Rule, ...]) -> int:
    """How far back the registry's access log is read: the longest `pulled` (0: no rule asks)."""
    return max((rule.pulled for rule in rules if rule.pulled), default=0)


@dataclass(frozen=True)
class Tag:
    repository: str
    tag: str
    digest: str  # the manifest it points at
    pushed: int  # when it was last pushed (seconds since the epoch)


@dataclass(frozen=True)
class Storage:
    """What the server's storage holds, as the inventory script reports it."""
    tags: tuple[Tag, ...]
    revisions: dict[str, tuple[str, ...]]  # repository: the manifests stored in it
    manifests: dict[str, dict]  # digest: the manifest (JSON); may lack some (unreadable)
    sizes: dict[str, int] = field(default_factory=dict)  # digest: bytes of a manifest blob
    # (repository, tag or digest, when): each manifest request a registry answered 200, from its log.
    pulls: tuple[tuple[str, str, int], ...] = ()
    # host: when the access log it still has begins (None: it could not be read).
    logs: dict[str, int | None] = field(default_factory=dict)

    def pulled_since(self, since: int) -> set[tuple[str, str]] | None:
        """(repository, tag or digest) pulled at `since` or later; None when a log read does not reach
        back to `since` (or none was read): then what was pulled is not known."""
        if not self.logs or any(begin is None or begin > since for begin in self.logs.values()):
            return None
        return {(repository, reference) for repository, reference, when in self.pulls if when >= since}


@dataclass(frozen=True)
class Plan:
    delete_tags: tuple[Tag, ...]
    delete_manifests: tuple[tuple[str, str], ...]  # (repository, digest)
    kept_tags: tuple[Tag, ...]
    freed_bytes: int  # at least: blobs only deleted manifests refer to (layers, configs, the manifests)
    untouched: tuple[str, ...]  # repositories no rule matches
    # Rules with `pulled` whose window no log covers: every tag under them stays.
    pulls_unknown: tuple[str, ...] = ()

    def report(self) -> dict:
        repositories = sorted({t.repository for t in self.delete_tags + self.kept_tags} | set(self.untouched))
        return {"repositories": len(repositories), "tags_kept": len(self.kept_tags),
                "tags_deleted": len(self.delete_tags), "manifests_deleted": len(self.delete_manifests),
                "freed_bytes_at_least": self.freed_bytes,
                "delete": [{"repository": t.repository, "tag": t.tag, "digest": t.digest} for t in self.delete_tags],
                "delete_manifests": [{"repository": r, "digest": d} for r, d in self.delete_manifests],
                "untouched": list(self.untouched), "pulls_unknown": list(self.pulls_unknown)}


def rule_for(rules: tuple[Rule, ...], repository: str) -> Rule | None:
    return next((rule for rule in rules if pattern_matches(rule.pattern, repository)), None)


def kept(rule: Rule, tags: list[Tag], now: int, pulled: set[tuple[str, str]] | None = None) -> set[str]:
    """The tags of one repository that stay under `rule`; `pulled`: what was pulled within the rule's
    `pulled` window (None with such a window: not known, so every tag stays)."""
    if rule.pulled is not None and pulled is None:
        return {t.tag for t in tags}
    newest = sorted(tags, key=lambda t: (t.pushed, t.tag), reverse=True)
    stay = {t.tag for t in newest[:rule.keep or 0]}
    if rule.within is not None:
        stay |= {t.tag for t in tags if now - t.pushed < rule.within}
    stay |= {t.tag for t in tags if any(fnmatch.fnmatchcase(t.tag, glob) for glob in rule.protect)}
    if rule.pulled is not None and pulled:
        stay |= {t.tag for t in tags if (t.repository, t.tag) in pulled or (t.repository, t.digest) in pulled}
    return stay


def children(manifest: dict | None) -> list[str]:
    """The manifests an image index refers to (its platforms)."""
    if not manifest or (manifest.get("mediaType") not in INDEX_TYPES and "manifests" not in manifest):
        return []
    return [m["digest"] for m in manifest.get("manifests", []) if "digest" in m]


def blobs(manifest: dict | None) -> dict[str, int]:
    """{digest: bytes} of the blobs an image manifest refers to (its config and layers)."""
    if not manifest:
        return {}
    found = {d["digest"]: int(d.get("size", 0)) for d in manifest.get("layers", []) if "digest" in d}
    config = manifest.get("config") or {}
    if "digest" in config:
        found[config["digest"]] = int(config.get("size", 0))
    return found


def plan(rules: tuple[Rule, ...], storage: Storage, now: int) -> Plan:
    by_repository: dict[str, list[Tag]] = {}
    for tag in storage.tags:
        by_repository.setdefault(tag.repository, []).append(tag)
    delete_tags: list[Tag] = []
    kept_tags: list[Tag] = []
    untouched: list[str] = []
    unknown: list[str] = []
    for repository in sorted(set(by_repository) | set(storage.revisions)):
        tags = by_repository.get(repository, [])
        rule = rule_for(rules, repository)
        if rule is None:
            untouched.append(repository)
            kept_tags += tags
            continue
        pulled = storage.pulled_since(now - rule.pulled) if rule.pulled is not None else None
        if rule.pulled is not None and pulled is None and str(rule) not in unknown:
            unknown.append(str(rule))
        stay = kept(rule, tags, now, pulled)
        for tag in sorted(tags, key=lambda t: t.tag):
            (kept_tags if tag.tag in stay else delete_tags).append(tag)
    # Per repository: the manifests the tags that stay refer to, with every index's platforms.
    delete_manifests = []
    live: set[str] = set()  # every manifest that stays, in any repository
    for repository in sorted(storage.revisions):
        if repository in untouched:
            live.update(storage.revisions[repository])
            continue
        needed = _closure({t.digest for t in kept_tags if t.repository == repository}, storage.manifests)
        losing = _closure({t.digest for t in delete_tags if t.repository == repository}, storage.manifests)
        # Untagged manifests regdeploy's rules did not take away are left to gc: they stay here. A
        # manifest that stays but could not be read might be an index: nothing of its repository goes.
        unread = any(d not in storage.manifests for d in needed)
        gone = set() if unread else {d for d in losing - needed if d in storage.revisions[repository]}
        live.update(set(storage.revisions[repository]) - gone)
        delete_manifests += [(repository, d) for d in sorted(gone)]
    return Plan(tuple(delete_tags), tuple(delete_manifests), tuple(kept_tags),
                _freed(delete_manifests, live, storage), tuple(untouched), tuple(unknown))


def _closure(digests: set[str], manifests: dict[str, dict]) -> set[str]:
    """The manifests and every platform manifest of the indexes among them."""
    found, todo = set(), list(digests)
    while todo:
        digest = todo.pop()
        if digest not in found:
            found.add(digest)
            todo += children(manifests.get(digest))
    return found


def _freed(deleted: list[tuple[str, str]], live: set[str], storage: Storage) -> int:
    """Bytes of the blobs that only deleted manifests refer to, the manifests' own included (a blob
    is stored once for every repository: one a live manifest refers to stays)."""
    gone = {digest for _, digest in deleted} - live
    kept_blobs: set[str] = set(live)
    for digest in live:
        kept_blobs |= set(blobs(storage.manifests.get(digest)))
    freed: dict[str, int] = {}
    for digest in gone:
        freed[digest] = storage.sizes.get(digest, 0)
        freed.update(blobs(storage.manifests.get(digest)))
    return sum(size for digest, size in freed.items() if digest not in kept_blobs)


def log_time(text: str) -> int | None:
    """Seconds since the epoch of Docker's log timestamp (RFC 3339, UTC, `docker logs -t`); None if it is
    not one."""
    import datetime
    try:
        return int(datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
                   .replace(tzinfo=datetime.timezone.utc).timestamp())
    except ValueError:
        return None


def parse_storage(lines: list[str]) -> Storage:
    """The inventory script's lines: `tag REPOSITORY TAG DIGEST EPOCH`, `revision REPOSITORY DIGEST`,
    `manifest DIGEST BYTES JSON` (the manifest on one line); with a `pulled` rule, from each registry's
    access log `log HOST BEGIN` (BEGIN: its first line's time, or `unknown`) and `pulled REPOSITORY
    REFERENCE TIME` (TIME as `docker logs -t` gives it)."""
    tags: list[Tag] = []
    revisions: dict[str, list[str]] = {}
    manifests: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    pulls: list[tuple[str, str, int]] = []
    logs: dict[str, int | None] = {}
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "tag":
            repository, tag, digest, pushed = rest.split()
            tags.append(Tag(repository, tag, digest, int(float(pushed))))
        elif kind == "revision":
            repository, digest = rest.split()
            revisions.setdefault(repository, []).append(digest)
        elif kind == "manifest":
            digest, size, text = rest.split(" ", 2)
            sizes[digest] = int(size)
            try:
                manifests[digest] = json.loads(text)
            except ValueError:
                pass  # not JSON: counted by its size only
        elif kind == "log":
            host, begin = rest.split()
            logs[host] = log_time(begin)  # `unknown`: None
        elif kind == "pulled":
            repository, reference, when = rest.split()
            at = log_time(when)
            if at is not None:
                pulls.append((repository, reference, at))
    return Storage(tuple(tags), {r: tuple(d) for r, d in revisions.items()}, manifests, sizes, tuple(pulls), logs)


TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def prune_input(found: Plan, storage: Storage) -> dict[str, list[str]]:
    """What the gc script's prune step reads (one file each): `repositories` the rules apply to, the
    `snapshot` of every tag in them as decided on, the `tags` and `manifests` to delete; lines of
    `REPOSITORY [TAG] DIGEST`."""
    ruled = sorted({t.repository for t in found.delete_tags + found.kept_tags} - set(found.untouched))
    return {"repositories": ruled,
            "snapshot": [f"{t.repository} {t.tag} {t.digest}" for t in storage.tags if t.repository in ruled],
            "tags": [f"{t.repository} {t.tag} {t.digest}" for t in found.delete_tags],
            "manifests": [f"{r} {d}" for r, d in found.delete_manifests]}


def script_input(found: Plan, storage: Storage) -> dict[str, list[str]]:
    """prune_input, for the regdeploy command, which renders it into the script: every name checked
    against distribution's grammar first (they come from the server's storage)."""
    from .access import REPOSITORY
    given = prune_input(found, storage)
    for t in storage.tags:
        if t.repository in given["repositories"] and not (REPOSITORY.fullmatch(t.repository) and TAG.fullmatch(t.tag) and DIGEST.fullmatch(t.digest)):
            raise RetentionError(f"the storage holds {t.repository}:{t.tag} -> {t.digest}, which is no "
                                 "repository, tag and digest distribution would write; nothing was deleted")
    for _, digest in found.delete_manifests:
        if not DIGEST.fullmatch(digest):
            raise RetentionError(f"the storage holds a manifest {digest!r}; nothing was deleted")
    return given


def main(argv: list[str]) -> int:
    """On the server, for the scheduled prune: `python3 retention.py RULES.json DIR` with the storage
    listing (templates/parts/storage-listing.sh.j2) on stdin writes DIR/repositories, snapshot, tags
    and manifests for the gc script, and prints the plan's report (JSON) without its lists."""
    rules_path, directory = argv
    with open(rules_path) as rules_file:
        rules = rules_from_json(rules_file.read())
    storage = parse_storage(sys.stdin.read().splitlines())
    found = plan(rules, storage, int(time.time()))
    for name, lines in prune_input(found, storage).items():
        with open(os.path.join(directory, name), "w") as out:
            out.write("".join(f"{line}\n" for line in lines))
    report = found.report()
    print(json.dumps({key: value for key, value in report.items() if not isinstance(value, list)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
