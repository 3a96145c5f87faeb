"""A wheel of this checkout, built as `pip wheel` builds it for a user (unit and e2e tests share it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def build_wheel(workdir: Path) -> Path:
    """The wheel of the checkout's tracked (and new, unignored) files: what a clone would build,
    without the lab's images, the venv or anything else lying in the work tree."""
    source = workdir / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO_ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
                    "-w", str(workdir / "dist"), str(source)], check=True, capture_output=True)
    return next((workdir / "dist").glob("regdeploy-*.whl"))
