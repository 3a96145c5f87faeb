"""The verification suite runs against any deployed inventory: the test lab, or --inventory=PATH."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.access import Access


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
