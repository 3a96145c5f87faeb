"""The verify suite's options and the fixtures the lab's tests share with it, declared once: the
verify suite's conftest.py adds them when it runs alone (installed as regdeploy.verify), and the
checkout's tests/conftest.py for every suite."""

from __future__ import annotations

from pathlib import Path

import pytest


def add_options(parser) -> None:
    """The verify suite's options, declared once for both places that add them."""
    group = parser.getgroup("regdeploy")
    group.addoption("--inventory", default=None,
                    help="Verify this (already deployed) inventory instead of building the test lab.")
    group.addoption("--test-image", default="busybox:latest",
                    help="Image pushed and pulled in the round trip (must exist on, or be pullable by, the clients).")
    group.addoption("--test-image-archive", default=None,
                    help="`docker save` archive of --test-image, loaded on the pushing client first.")


def _lab_config():
    """The test lab's plan, in a checkout only (the lab is no part of the installed package)."""
    try:
        from lab import config
    except ImportError:
        raise pytest.UsageError("the verify suite needs --inventory=PATH (your deployed inventory)") from None
    return config


@pytest.fixture(scope="session")
def test_image(request) -> str:
    return request.config.getoption("--test-image")


@pytest.fixture(scope="session")
def test_image_archive(request) -> Path | None:
    given = request.config.getoption("--test-image-archive")
    if given:
        return Path(given)
    if request.config.getoption("--inventory"):
        return None
    return _lab_config().default_lab("regdeploy-test").test_image_archive
