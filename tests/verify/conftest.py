"""The verification suite runs against any deployed inventory: the test lab, or --inventory=PATH.

Tests about every host are parametrized per host (as testinfra's own examples do), so one failing
host never hides the others; the host names come from the inventory (or the test lab's plan) when
the tests are collected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import config as lab_config
from regdeploy import runtimes
from regdeploy.inventory import load_fleet
from tests.access import Access


def pytest_generate_tests(metafunc):
    if "inventory_host_name" in metafunc.fixturenames:
        inventory = metafunc.config.getoption("--inventory")
        names = ([h.name for h in load_fleet(inventory).hosts] if inventory
                 else lab_config.hostnames(lab_config.TEST_LAB_CLIENTS))
        metafunc.parametrize("inventory_host_name", names)


@pytest.fixture(scope="session")
def access(request, tmp_path_factory) -> Access:
    inventory = request.config.getoption("--inventory")
    if inventory:
        return Access.load(Path(inventory), tmp_path_factory.mktemp("verify"))
    lab_session = request.getfixturevalue("lab_session")
    lab_session.ensure_deployed()
    return lab_session.access()


@pytest.fixture(scope="session")
def fleet(access):
    return access.fleet


@pytest.fixture(scope="session")
def server_host(access, fleet):
    return access.host(fleet.server)


@pytest.fixture
def inventory_host(fleet, inventory_host_name):
    return next(h for h in fleet.hosts if h.name == inventory_host_name)


@pytest.fixture
def any_host(access, inventory_host):
    """testinfra's host for each inventory host in turn."""
    return access.host(inventory_host)


@pytest.fixture
def host_runtimes(any_host, inventory_host) -> tuple[str, ...]:
    """The runtimes the deploy made trust the registry on this host, decided as the deploy decides."""
    settings = inventory_host.settings
    tools = {tool for tool in ("dockerd", "podman", "containerd") if any_host.exists(tool)}
    return runtimes.resolve(settings.client_runtimes, settings.docker_install_source, tools)
