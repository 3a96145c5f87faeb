"""Shared fixtures: the test lab (created and removed by the session) or the user's own inventory.

`pytest` alone builds a dedicated lab (named regdeploy-test, so a demo lab is left alone), deploys
and tests it, and removes it at the end. `pytest tests/verify --inventory=PATH` verifies the user's
own hosts instead (the lab-only suites are then not collected).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import config as lab_config
from lab import hosts as lab_hosts
from tests.access import Access, run_deploy
from tests.verify.fixtures import add_options, test_image, test_image_archive  # noqa: F401 (fixtures)

TEST_LAB = lab_config.default_lab("regdeploy-test")
# Each suite's folder is its marker (pyproject.toml declares them): `pytest -m unit`, `-m "not e2e"`.
LAYERS = ("unit", "lab", "e2e", "verify", "vm")


def pytest_collection_modifyitems(items):
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in LAYERS:
            item.add_marker(layer)


def pytest_addoption(parser):
    add_options(parser)
    parser.getgroup("regdeploy").addoption("--keep-lab", action="store_true",
                                           help="Leave the test lab running afterwards.")


class LabSession:
    """The lab for this test session: created fresh once, deployed at most once unless a test redeploys."""

    def __init__(self, lab: lab_config.Lab, workdir: Path):
        self.lab = lab
        self.workdir = workdir
        self.deployed = False

    def up(self, clients: int = lab_config.TEST_LAB_CLIENTS) -> None:
        # Hosts past TEST_LAB_OS (a client added by a test) are bookworm.
        lab_hosts.up(self.lab, clients=clients, os_spec=lab_config.TEST_LAB_OS)

    @property
    def inventory(self) -> Path:
        return self.lab.inventory_path

    def access(self) -> Access:
        return Access.load(self.inventory, self.workdir)

    def fresh(self) -> None:
        """The lab's hosts as the lab makes them, for a test that starts from scratch: recreated when a
        module that ran before (in whatever order pytest was given them) deployed to them."""
        if self.deployed:
            lab_hosts.down(self.lab)
            self.up()
            self.deployed = False

    def ensure_deployed(self) -> None:
        if not self.deployed:
            result = run_deploy(self.inventory)
            assert result.returncode == 0, result.stderr[-4000:]
            self.deployed = True


@pytest.fixture(scope="session")
def lab_session(request, tmp_path_factory):
    if request.config.getoption("--inventory"):
        pytest.skip("lab-only test: --inventory points at your own hosts")
    session = LabSession(TEST_LAB, tmp_path_factory.mktemp("lab"))
    # Never depend on leftovers: a lab from an earlier (crashed) run is removed first.
    lab_hosts.down(TEST_LAB)
    session.up(clients=lab_config.TEST_LAB_CLIENTS)
    yield session
    if not request.config.getoption("--keep-lab"):
        lab_hosts.down(TEST_LAB)
