"""The lab builds its hosts from the controller's own Debian mirror."""

import pytest

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
