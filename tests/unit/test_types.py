"""The type checker is clean on regdeploy/ (settings, host state and plans are typed records)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_finds_nothing_in_regdeploy(tmp_path):
    # pyproject.toml's [tool.mypy] says what is checked; a cache of this run's own, so nothing stale counts.
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found" in result.stdout
