"""Schedule the registry's garbage collection (registry_gc_schedule): the same script `regdeploy gc`
runs, started by a systemd timer on the server; removed when the schedule is emptied."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from regdeploy import pki, registry_files
from regdeploy.registry_files import GC_FILES, GC_SCRIPT, GC_TIMER_HOLDER, GC_UNIT
from regdeploy.rendering import render
from regdeploy.settings import Settings
from .host_files import matches

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
    differs = not all(matches(found.get(label), content, MODES[label]) for label, content in wanted.items())
    # Enabled: the link in timers.target.wants exists and leads to this very timer (the fact hashes
    # what a link leads to; its mode is the link's own).
    enabled = (found.get("gc_enabled") or "").split(" ")[0] == pki.sha256(wanted["gc_timer"])
    return "install" if differs or not enabled else "none"


@deploy("Schedule the registry's garbage collection")
def schedule_gc(settings: Settings, state: dict) -> None:
    wanted = gc_files(settings) if settings.registry_gc_schedule else {}
    action = plan_gc_schedule(settings.registry_gc_schedule, wanted, state["files"])
    if action == "none":
        host.noop(f"garbage collection: {settings.registry_gc_schedule or 'not scheduled'} (registry_gc_schedule)")
        return
    paths = list(GC_FILES.values())
    files = [render("put-file.sh.j2", path=GC_FILES[label], mode=MODES[label], content=content)
             for label, content in wanted.items()]
    name = (f"Run the registry's garbage collection on schedule {settings.registry_gc_schedule!r} ({GC_UNIT}.timer)"
            if action == "install" else f"Remove the garbage collection timer {GC_UNIT}.timer")
    server.shell(name=name, commands=[render("schedule-gc.sh.j2", unit=GC_UNIT, schedule=settings.registry_gc_schedule,
                                             files=files, paths=paths)])
