"""The registry's scheduled garbage collection (registry_gc_schedule): the timer's files and whether
a run installs, removes or leaves them. No pyinfra."""

from __future__ import annotations

from . import pki, registry_files
from .host_state import file_matches
from .registry_files import GC_FILES, GC_SCRIPT, GC_TIMER_HOLDER, GC_UNIT
from .rendering import render
from .settings import Settings


MODES = {"gc_script": "700", "gc_service": "644", "gc_timer": "644"}


def gc_files(settings: Settings) -> dict[str, str]:
    """What each of the timer's files holds ({fact label: content})."""
    return {
        "gc_script": registry_files.server_script(settings, "registry-gc.sh.j2", GC_TIMER_HOLDER,
                                                  delete_untagged=True),
        "gc_service": render("regdeploy-gc.service.j2", unit=GC_UNIT, script=GC_SCRIPT),
        "gc_timer": render("regdeploy-gc.timer.j2", unit=GC_UNIT, schedule=settings.registry_gc_schedule),
    }


def plan_gc_schedule(schedule: str, wanted: dict[str, str], found: dict[str, str | None]) -> str:
    """"install", "remove" or "none", from the fact's "SHA256 MODE OWNER" per file (None: absent)."""
    if not schedule:
        return "remove" if any(found.get(label) for label in GC_FILES) else "none"
    differs = not all(file_matches(found.get(label), content, MODES[label]) for label, content in wanted.items())
    # Enabled: the link in timers.target.wants exists and leads to this very timer (the fact hashes
    # what a link leads to; its mode is the link's own).
    enabled = (found.get("gc_enabled") or "").split(" ")[0] == pki.sha256(wanted["gc_timer"])
    return "install" if differs or not enabled else "none"
