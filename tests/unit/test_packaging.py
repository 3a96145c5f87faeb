"""The wheel built from a checkout: regdeploy's own namespace only (the deploy, its tasks, every
template, the verify suite), a licence and a version; no top-level `tasks` or `lab` to shadow a user's own packages."""

import zipfile
from pathlib import Path

import pytest

import regdeploy
from tests.packaging import REPO_ROOT as REPO, build_wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_installs_only_regdeploys_namespace(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    top = {name.split("/")[0] for name in names}
    assert top == {"regdeploy", f"regdeploy-{regdeploy.__version__}.dist-info"}, top


def test_the_wheel_carries_the_deploy_its_tasks_and_every_template(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"regdeploy/templates/{p.relative_to(REPO / 'templates')}" for p in (REPO / "templates").glob("*/*.j2")}
    assert templates and templates <= names, templates - names
    tasks = {f"regdeploy/tasks/{p.name}" for p in (REPO / "tasks").glob("*.py")}
    assert {"regdeploy/tasks/__init__.py", "regdeploy/tasks/registry_server.py"} <= tasks <= names, tasks - names
    assert {"regdeploy/deploys.py", "regdeploy/cli.py"} <= names
    verify = {f"regdeploy/verify/{p.name}" for p in (REPO / "tests/verify").glob("*.py")}
    assert {"regdeploy/verify/conftest.py", "regdeploy/verify/test_round_trip.py"} <= verify <= names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_the_wheel_has_the_licence_and_the_version(wheel):
    archive = zipfile.ZipFile(wheel)
    info = f"regdeploy-{regdeploy.__version__}.dist-info"
    metadata = archive.read(f"{info}/METADATA").decode()
    assert f"Version: {regdeploy.__version__}\n" in metadata
    assert "License-Expression: MIT\n" in metadata
    assert archive.read(f"{info}/licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
