"""Scheduled garbage collection: what the timer's files hold and when they are (re)written, from the
fact's file checks (no host)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from regdeploy import pki, retention
from regdeploy.docker_packages import packages_to_check
from regdeploy.registry_files import GC_FILES
from regdeploy.settings import build_settings
from regdeploy.gc_schedule import MODES, gc_files, plan_gc_schedule, unwanted

SCHEDULE = "Sun *-*-* 03:00"


def settings(schedule: str = SCHEDULE, retention: tuple[str, ...] = ()):
    errors: list[str] = []
    built = build_settings("registry", {"registry_gc_schedule": schedule, "registry_retention": list(retention)},
                           "registry", True, errors, check_files=False)
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


RULES = ("prune/* keep=3 protect=latest",)


def test_with_retention_rules_the_timer_prunes_first_with_the_planner_on_the_server():
    files = gc_files(settings(retention=RULES))
    assert set(files) == {"gc_script", "gc_service", "gc_timer", "gc_rules", "gc_planner", "gc_planner_lib"}
    assert retention.rules_from_json(files["gc_rules"]) == retention.parse_rules(RULES)
    assert files["gc_planner"] == Path(retention.__file__).read_text()
    assert f"python3 -B {GC_FILES['gc_planner']} {GC_FILES['gc_rules']}" in files["gc_script"]
    # Rules taken away again: the prune's files are the schedule's to remove.
    plain = gc_files(settings())
    assert plan_gc_schedule(SCHEDULE, plain, {**found_for(plain), "gc_planner": "x 644 root"}) == "install"
    assert unwanted(plain) == [GC_FILES["gc_rules"], GC_FILES["gc_planner"], GC_FILES["gc_planner_lib"]]
    assert unwanted(files) == []
    # python3 is asked about (and installed) only where the timer prunes.
    assert "python3" in packages_to_check(settings(retention=RULES))
    assert "python3" not in packages_to_check(settings()) + packages_to_check(settings("", RULES))


def test_the_planner_runs_alone_with_debians_python(tmp_path):
    """retention.py as the server runs it: a file beside token_service.py, no regdeploy package, the
    system's python3; it writes the gc script's prune files and prints the report."""
    for label in ("gc_planner", "gc_planner_lib"):
        (tmp_path / GC_FILES[label].rsplit("/", 1)[1]).write_text(gc_files(settings(retention=RULES))[label])
    (tmp_path / "rules.json").write_text(gc_files(settings(retention=RULES))["gc_rules"])
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    listing = "".join(f"tag prune/app {tag} {digest} {pushed}\n" for tag, digest, pushed in
                      (("v1", old, 1000), ("v2", new, 2000), ("v3", new, 3000), ("v4", new, 4000)))
    listing += f"revision prune/app {old}\nrevision prune/app {new}\nmanifest {old} 10 {{}}\nmanifest {new} 10 {{}}\n"
    (tmp_path / "out").mkdir()
    result = subprocess.run(["/usr/bin/python3", "-B", str(tmp_path / "retention.py"), str(tmp_path / "rules.json"),
                             str(tmp_path / "out")], input=listing, capture_output=True, text=True, cwd="/",
                            env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["tags_deleted"], report["tags_kept"], report["manifests_deleted"]) == (1, 3, 1)
    assert (tmp_path / "out" / "tags").read_text() == f"prune/app v1 {old}\n"
    assert (tmp_path / "out" / "manifests").read_text() == f"prune/app {old}\n"
    assert (tmp_path / "out" / "repositories").read_text() == "prune/app\n"
    assert len((tmp_path / "out" / "snapshot").read_text().splitlines()) == 4
