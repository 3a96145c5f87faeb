"""The verification suite runs against any deployed inventory: the test lab, or --inventory=PATH.

Tests about every host are parametrized per host (as testinfra's own examples do), so one failing
host never hides the others; the host names come from the inventory (or the test lab's plan) when
the tests are collected. Installed with regdeploy (as regdeploy.verify), `regdeploy -i PATH verify`
runs it with no checkout: then --inventory is required, and this file declares the suite's options
(in a checkout, tests/conftest.py declares them for every suite).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from regdeploy.inventory import load_fleet

from .access import Access
from .fixtures import _lab_config, add_options, test_image, test_image_archive  # noqa: F401 (fixtures)


def pytest_addoption(parser):
    try:
        add_options(parser)
    except ValueError:  # a checkout: tests/conftest.py added them already
        pass


def pytest_generate_tests(metafunc):
    """Per-host tests over every host that uses the registry (not a host that is only the load
    balancer: test_load_balancer.py checks it), server tests over every registry server (replicas:
    each), load balancer tests over every registry_lb host (none: not generated)."""
    inventory = metafunc.config.getoption("--inventory")
    fleet = load_fleet(inventory) if inventory else None
    if "inventory_host_name" in metafunc.fixturenames:
        names = ([h.name for h in fleet.hosts if h.settings.uses_registry] if fleet
                 else _lab_config().hostnames(_lab_config().TEST_LAB_CLIENTS))
        metafunc.parametrize("inventory_host_name", names)
    if "server_name" in metafunc.fixturenames:
        metafunc.parametrize("server_name", [h.name for h in fleet.servers] if fleet else ["registry"])
    if "lb_name" in metafunc.fixturenames:
        # Without a load balancer these tests are deselected (pytest_collection_modifyitems), not skipped.
        metafunc.parametrize("lb_name", [h.name for h in fleet.lbs] if fleet and fleet.lbs else [None])
    if "cache_lb_name" in metafunc.fixturenames:
        # The load balancers running the replicas' shared cache (registry_lb_cache); none: deselected.
        metafunc.parametrize("cache_lb_name", [h.name for h in fleet.lbs] if _has_cache(fleet) else [None])


def _has_cache(fleet) -> bool:
    return bool(fleet and fleet.lbs and fleet.server.settings.blob_cache_address)


def pytest_collection_modifyitems(config, items):
    """An inventory without a registry_lb host (one server needs none) has no load balancer to check,
    one without registry_lb_cache no shared cache: those tests are not collected (reported as
    deselected)."""
    inventory = config.getoption("--inventory")
    fleet = load_fleet(inventory) if inventory else None
    wanted = {"lb_name": bool(fleet and fleet.lb), "cache_lb_name": _has_cache(fleet)}
    unused = [item for item in items
              if any(name in getattr(item, "fixturenames", ()) and not has for name, has in wanted.items())]
    if unused:
        config.hook.pytest_deselected(items=unused)
        items[:] = [item for item in items if item not in unused]


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


@pytest.fixture
def server_host(access, server_name):
    """testinfra's host for each registry server in turn (one, or every replica)."""
    return access.host(server_name)


@pytest.fixture
def inventory_host(fleet, inventory_host_name):
    return next(h for h in fleet.hosts if h.name == inventory_host_name)


@pytest.fixture
def any_host(access, inventory_host):
    """testinfra's host for each inventory host in turn."""
    return access.host(inventory_host)


def declared_runtimes(settings) -> tuple[str, ...] | None:
    """The runtimes the inventory declares for a host, not what the deploy decided from the host (a
    check must not ask the code it checks): `client_runtimes`, else Docker where regdeploy installs
    it; none on a host that is only the load balancer. None: nothing is declared."""
    if not settings.uses_registry:
        return ()
    if settings.client_runtimes:
        return tuple(settings.client_runtimes)
    if settings.docker_install_source != "none":
        return ("docker",)
    return None


@pytest.fixture
def host_runtimes(inventory_host) -> tuple[str, ...]:
    """The runtimes that must trust the registry on this host, as the inventory declares them."""
    declared = declared_runtimes(inventory_host.settings)
    if declared is None:
        pytest.fail(f"host {inventory_host.name!r}: docker_install_source is 'none' and client_runtimes is not "
                    "set, so nothing says which runtimes it pulls with: set client_runtimes (docker, containerd, "
                    "podman) for it, and the verify suite checks those", pytrace=False)
    return declared
