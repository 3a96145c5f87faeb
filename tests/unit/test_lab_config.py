"""The lab builds its hosts from the controller's own Debian mirror."""

import pytest

from lab import config
from lab.config import mirror_from_apt_sources

DEB822 = """Types: deb
# a comment
URIs: http://mirror.internal/debian/
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.internal/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize("files,expected", [
    ({"sources.list.d/debian.sources": DEB822}, "http://mirror.internal/debian"),
    ({"sources.list": "# x\ndeb [arch=amd64] http://ftp.example/debian bookworm main\n"}, "http://ftp.example/debian"),
    ({"sources.list": "deb http://ftp.example/debian-security bookworm-security main\n"}, None),
    ({"sources.list.d/other.sources": DEB822.replace("Types: deb\n# a comment", "Types: deb\nEnabled: no")},
     None),
    ({}, None),
])
def test_mirror_from_apt_sources(tmp_path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert mirror_from_apt_sources(tmp_path, "bookworm") == expected


def test_host_specs_one_for_all_or_one_per_host_in_order():
    from lab.config import HostSpec, host_specs

    assert host_specs("", 3) == [HostSpec()] * 3
    assert host_specs("trixie", 2) == [HostSpec("trixie")] * 2
    assert host_specs("bookworm,sid:containerd-store", 3) == [HostSpec(), HostSpec("sid", "containerd-store"),
                                                              HostSpec()]
    assert [str(s) for s in host_specs(config.TEST_LAB_OS, config.TEST_LAB_CLIENTS + 1)] == \
        config.TEST_LAB_OS.split(",")


@pytest.mark.parametrize("text,message", [
    ("buster", "unknown release 'buster'"), ("sid:k8s", "unknown role 'k8s'"),
    ("bookworm:podman", "precaches containerd and Podman for trixie and sid only"),
])
def test_host_specs_refuse_what_the_lab_cannot_build(text, message):
    from lab.config import HostSpec

    with pytest.raises(ValueError, match=message):
        HostSpec.parse(text)
