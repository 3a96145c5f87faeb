"""Schedule the registry's garbage collection (registry_gc_schedule): the same script `regdeploy gc`
runs, started by a systemd timer on the server; removed when the schedule is emptied."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server

from regdeploy.gc_schedule import MODES, gc_files, plan_gc_schedule, unwanted
from regdeploy.retention import PACKAGES as PRUNE_PACKAGES
from regdeploy.registry_files import GC_FILES, GC_UNIT, PRUNE_DIR
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState


@deploy("Schedule the registry's garbage collection")
def schedule_gc(settings: Settings, state: HostState) -> None:
    wanted = gc_files(settings) if settings.registry_gc_schedule else {}
    action = plan_gc_schedule(settings.registry_gc_schedule, wanted, state.files)
    if action == "none":
        host.noop(f"garbage collection: {settings.registry_gc_schedule or 'not scheduled'} (registry_gc_schedule)")
        return
    paths = list(GC_FILES.values())
    missing = [name for name in PRUNE_PACKAGES if not state.packages.get(name)]
    if action == "install" and settings.registry_retention and missing:
        apt.packages(name=f"Install the scheduled prune's packages ({', '.join(missing)})", packages=missing,
                     update=True, no_recommends=True)
    files = [render("put-file.sh.j2", path=GC_FILES[label], mode=MODES[label], content=content)
             for label, content in wanted.items()]
    name = (f"Run the registry's garbage collection on schedule {settings.registry_gc_schedule!r} ({GC_UNIT}.timer)"
            if action == "install" else f"Remove the garbage collection timer {GC_UNIT}.timer")
    server.shell(name=name, commands=[render("schedule-gc.sh.j2", unit=GC_UNIT, schedule=settings.registry_gc_schedule,
                                             files=files, paths=paths, unwanted=unwanted(wanted),
                                             prune_dir=PRUNE_DIR)])
