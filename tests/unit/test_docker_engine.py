"""Which packages a host gets with Docker: a pure decision from the host's fact (release, AppArmor)."""

from __future__ import annotations

import pytest

from regdeploy.host_state import HostState
from regdeploy.settings import build_settings
from regdeploy.docker_packages import missing_packages, packages_for

BOOKWORM = {"ID": "debian", "VERSION_ID": "12", "VERSION_CODENAME": "bookworm"}
TRIXIE = {"ID": "debian", "VERSION_ID": "13", "VERSION_CODENAME": "trixie"}


def settings(source: str = "distro", server: bool = False):
    errors: list[str] = []
    built = build_settings("h", {"docker_install_source": source}, "registry", server, errors, check_files=False)
    assert not errors
    return built


@pytest.mark.parametrize("source, server, os_release, apparmor, expected", [
    ("distro", False, BOOKWORM, False, ["docker.io"]),
    ("distro", True, BOOKWORM, False, ["docker.io", "curl"]),
    ("distro", False, TRIXIE, False, ["docker.io", "docker-cli"]),
    # A kernel that enforces AppArmor (Debian's own kernels do): Docker needs apparmor_parser.
    ("distro", False, BOOKWORM, True, ["docker.io", "apparmor"]),
    ("distro", True, TRIXIE, True, ["docker.io", "docker-cli", "apparmor", "curl"]),
    ("docker-ce", False, BOOKWORM, True, ["docker-ce", "docker-ce-cli", "containerd.io", "apparmor"]),
    # Nothing installed by regdeploy: nothing added, whatever the kernel.
    ("none", False, BOOKWORM, True, []),
    ("none", True, BOOKWORM, True, []),
    # What the fact asks dpkg about: everything that might be needed.
    ("distro", True, None, None, ["docker.io", "docker-cli", "apparmor", "curl"]),
])
def test_packages_for(source, server, os_release, apparmor, expected):
    assert packages_for(settings(source, server), os_release, apparmor) == expected


def test_a_host_with_docker_but_no_apparmor_parser_gets_apparmor_only():
    state = HostState(os=BOOKWORM, apparmor=True, packages={"docker.io": True, "apparmor": False})
    assert missing_packages(settings(), state) == ["apparmor"]
    state.packages["apparmor"] = True
    assert missing_packages(settings(), state) == []
