"""`pip install .` from a checkout gives the regdeploy command everything it needs: the package, the
deploy's tasks and every template (package data)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_carries_the_tasks_and_every_template(tmp_path):
    source = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--disable-pip-version-check", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("regdeploy-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"regdeploy/templates/{p.name}" for p in (REPO / "templates").glob("*.j2")}
    assert templates and templates <= names, templates - names
    assert {"tasks/registry_server.py", "tasks/docker_client.py", "regdeploy/cli.py"} <= names
    assert any(n.endswith("entry_points.txt") for n in names)
