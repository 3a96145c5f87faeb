"""The documentation site: its generated pages match the code they describe, and it builds with
`mkdocs build --strict` (a broken link, a page missing from the nav or a bad reference fails)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generate():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_pages_are_current():
    stale = _generate().stale()
    assert not stale, f"stale generated pages {stale}: run .venv/bin/python docs/generate.py"


def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "reference" / "variables" / "index.html").exists()


def test_every_test_the_docs_name_exists():
    """A page that says "proven by tests/x.py::test_y" must name a test that is there (renamed or
    removed tests would leave a guarantee unproven without anyone noticing)."""
    defined = {(path.name, name) for path in (ROOT / "tests").rglob("test_*.py")
               for name in re.findall(r"^def (test_\w+)", path.read_text(), re.M)}
    cited = {(file, name) for page in (ROOT / "docs").rglob("*.md")
             for file, name in re.findall(r"(test_\w+\.py)::(test_\w+)", page.read_text())}
    assert len(cited) > 15
    assert cited - defined == set()
