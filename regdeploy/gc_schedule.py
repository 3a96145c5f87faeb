"""The registry's scheduled garbage collection (registry_gc_schedule): the timer's files and whether
a run installs, removes or leaves them. No pyinfra."""

from __future__ import annotations

from pathlib import Path

from . import pki, registry_files, retention
from .host_state import file_matches
from .registry_files import GC_FILES, GC_SCRIPT, GC_TIMER_HOLDER, GC_UNIT
from .rendering import render
from .settings import Settings


MODES = {"gc_script": "700", "gc_service": "644", "gc_timer": "644", "gc_rules": "644", "gc_planner": "644",
         "gc_planner_lib": "644"}


def gc_files(settings: Settings) -> dict[str, str]:
    """What each of the timer's files holds ({fact label: content}); with registry_retention, the
    collection prunes first, planned on the server by retention.py."""
    prune = None
    files = {}
    if settings.registry_retention:
        rules = retention.parse_rules(settings.registry_retention)
        prune = {"scheduled": True, "planner": GC_FILES["gc_planner"], "rules": GC_FILES["gc_rules"],
                 "pulls_window": retention.pulls_window(rules)}
        files = {"gc_rules": retention.rules_json(rules),
                 "gc_planner": Path(retention.__file__).read_text(),
                 "gc_planner_lib": registry_files.token_service_script()}
    return {
        "gc_script": registry_files.server_script(settings, "registry-gc.sh.j2", GC_TIMER_HOLDER,
                                                  delete_untagged=True, prune=prune),
        "gc_service": render("regdeploy-gc.service.j2", unit=GC_UNIT, script=GC_SCRIPT),
        "gc_timer": render("regdeploy-gc.timer.j2", unit=GC_UNIT, schedule=settings.registry_gc_schedule),
        **files,
    }


def unwanted(wanted: dict[str, str]) -> list[str]:
    """The timer's files a schedule without them leaves behind (the prune's, once the rules are gone)."""
    return [path for label, path in GC_FILES.items() if label not in wanted and label != "gc_enabled"]


def plan_gc_schedule(schedule: str, wanted: dict[str, str], found: dict[str, str | None]) -> str:
    """"install", "remove" or "none", from the fact's "SHA256 MODE OWNER" per file (None: absent)."""
    if not schedule:
        return "remove" if any(found.get(label) for label in GC_FILES) else "none"
    differs = not all(file_matches(found.get(label), content, MODES[label]) for label, content in wanted.items())
    differs |= any(found.get(label) for label, path in GC_FILES.items() if path in unwanted(wanted))
    # Enabled: the link in timers.target.wants exists and leads to this very timer (the fact hashes
    # what a link leads to; its mode is the link's own).
    enabled = (found.get("gc_enabled") or "").split(" ")[0] == pki.sha256(wanted["gc_timer"])
    return "install" if differs or not enabled else "none"
