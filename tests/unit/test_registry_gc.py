"""Scheduled garbage collection: what the timer's files hold and when they are (re)written, from the
fact's file checks (no host)."""

from __future__ import annotations

import subprocess

import pytest

from regdeploy import pki
from regdeploy.settings import build_settings
from regdeploy.gc_schedule import MODES, gc_files, plan_gc_schedule

SCHEDULE = "Sun *-*-* 03:00"


def settings(schedule: str = SCHEDULE):
    errors: list[str] = []
    built = build_settings("registry", {"registry_gc_schedule": schedule}, "registry", True, errors,
                           check_files=False)
    assert not errors
    return built


def found_for(wanted: dict[str, str], **override) -> dict[str, str | None]:
    found = {label: f"{pki.sha256(content)} {MODES[label]} root" for label, content in wanted.items()}
    found["gc_enabled"] = f"{pki.sha256(wanted['gc_timer'])} 777 root"  # a link: its own mode
    found.update(override)
    return found


def test_the_timer_runs_the_collection_script_on_the_schedule():
    files = gc_files(settings())
    assert f"OnCalendar={SCHEDULE}" in files["gc_timer"] and "Persistent=true" in files["gc_timer"]
    assert "ExecStart=/bin/sh /etc/regdeploy/gc.sh" in files["gc_service"]
    assert subprocess.run(["sh", "-n"], input=files["gc_script"], text=True).returncode == 0
    assert "--delete-untagged" in files["gc_script"]
    # The same script from one deploy to the next (no controller pid or time in it).
    assert gc_files(settings()) == files


@pytest.mark.parametrize("schedule, override, action", [
    (SCHEDULE, {}, "none"),
    (SCHEDULE, {"gc_enabled": None}, "install"),  # disabled by hand
    (SCHEDULE, {"gc_script": None, "gc_service": None, "gc_timer": None, "gc_enabled": None}, "install"),
    (SCHEDULE, {"gc_script": "0" * 64 + " 700 root"}, "install"),  # edited by hand
    (SCHEDULE, {"gc_script": None}, "install"),
    ("", {}, "remove"),
    ("", {"gc_script": None, "gc_service": None, "gc_timer": None, "gc_enabled": None}, "none"),
])
def test_plan(schedule, override, action):
    wanted = gc_files(settings(SCHEDULE))
    assert plan_gc_schedule(schedule, wanted if schedule else {}, found_for(wanted, **override)) == action


def test_a_new_schedule_rewrites_the_timer():
    wanted = gc_files(settings())
    assert plan_gc_schedule("daily", gc_files(settings("daily")), found_for(wanted)) == "install"
