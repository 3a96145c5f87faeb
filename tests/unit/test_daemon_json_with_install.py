"""daemon.json on a fresh host goes in with Docker's install: written before apt (never over a file that
appeared since the fact looked), confirmed once Docker runs, and taken out again if Docker does not take
it. The real scripts run under sh, against a temporary directory, with stand-ins for systemctl and docker."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from regdeploy.daemon_config import plan_daemon_json
from regdeploy.host_state import HostState
from regdeploy.settings import validate_hosts
from regdeploy.docker_packages import with_install

FRESH = HostState(daemon_json_kind="absent", active=False, trusted=None, dockerd_version=None)


def scripts(path: Path, installs_engine: bool = True):
    settings = validate_hosts([("reg1", {"docker_daemon_json": str(path)}, {"registry_servers"})],
                              check_files=False)["reg1"]
    plan = plan_daemon_json(FRESH, str(path), settings.registry_address, (), "reg1")
    return plan, with_install(settings, FRESH, plan, installs_engine)


def run(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", **env})


@pytest.fixture
def stand_ins(tmp_path):
    """systemctl (logs its calls; is-active answers $ACTIVE, enable answers $ENABLE), docker (info lists
    $LISTED as insecure registries) and journalctl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {
        "systemctl": 'echo "$*" >> "$CALLS"\ncase "$1" in is-active) exit "${ACTIVE:-0}";; '
                     'enable) exit "${ENABLE:-0}";; esac\nexit 0',
        "docker": 'printf "%s \\n" "$LISTED"',
        "journalctl": "exit 0",
    }.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    return {"CALLS": str(tmp_path / "calls")}


def test_only_a_host_that_installs_the_engine_gets_the_scripts(tmp_path):
    assert scripts(tmp_path / "daemon.json", installs_engine=False)[1] is None
    assert scripts(tmp_path / "daemon.json")[1] is not None


def test_the_file_is_written_byte_for_byte_with_mode_644(tmp_path):
    path = tmp_path / "etc" / "docker" / "daemon.json"
    plan, early = scripts(path)
    result = run(early.before, tmp_path)
    assert result.returncode == 0, result.stderr
    assert path.read_text() == plan.content and '"reg1:5000"' in plan.content
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == ["daemon.json"]  # nothing staged is left


def test_a_file_that_appeared_since_the_fact_looked_is_left_as_it_is(tmp_path):
    path = tmp_path / "daemon.json"
    early = scripts(path)[1]
    path.write_text('{"debug": true}\n')
    result = run(early.before, tmp_path)
    assert result.returncode == 1 and "appeared during the deploy; it is left as it is" in result.stderr
    assert path.read_text() == '{"debug": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]


def test_a_docker_that_took_the_file_is_confirmed_and_stamped(tmp_path, stand_ins):
    path = tmp_path / "daemon.json"
    plan, early = scripts(path)
    assert run(early.before, tmp_path).returncode == 0
    result = run(early.after, tmp_path, **stand_ins, LISTED="127.0.0.0/8 reg1:5000")
    assert result.returncode == 0, result.stderr
    assert path.read_text() == plan.content
    # The package started and enabled Docker: asked, not started again.
    assert Path(stand_ins["CALLS"]).read_text().splitlines() == ["is-active -q docker", "is-enabled -q docker"]
    stamp = (tmp_path / "daemon.json.regdeploy-confirmed").read_text()
    assert stamp == hashlib.sha256(plan.content.encode()).hexdigest() + "  -\n"


@pytest.mark.parametrize("changed_since", [False, True])
def test_a_docker_that_will_not_start_with_the_file_gets_it_taken_out_again(tmp_path, stand_ins, changed_since):
    path = tmp_path / "daemon.json"
    early = scripts(path)[1]
    assert run(early.before, tmp_path).returncode == 0
    if changed_since:
        path.write_text('{"somebody": "else"}\n')
    result = run(early.after, tmp_path, **stand_ins, ACTIVE="3", ENABLE="1")
    assert result.returncode == 1 and f"Docker did not start with the new {path}" in result.stderr
    # Only the file regdeploy wrote is removed: one changed since is somebody's.
    assert path.exists() == changed_since
    assert ("removed" in result.stderr) != changed_since
    assert Path(stand_ins["CALLS"]).read_text().splitlines() == [
        "is-active -q docker", "enable --now docker", "restart docker"]
    assert not (tmp_path / "daemon.json.regdeploy-confirmed").exists()
