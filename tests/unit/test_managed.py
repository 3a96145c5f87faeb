"""The version record on every managed host: what a run writes and what it (and --dry) says."""

import pytest

from regdeploy.managed import VersionRecord, plan_version_record


@pytest.mark.parametrize("lines,expected", [
    (None, VersionRecord(True, "regdeploy 0.2.0\n", "not managed by regdeploy before: this run records regdeploy 0.2.0")),
    ([], VersionRecord(True, "regdeploy 0.2.0\n", "not managed by regdeploy before: this run records regdeploy 0.2.0")),
    (["regdeploy 0.1.0"], VersionRecord(True, "regdeploy 0.2.0\n", "managed by regdeploy 0.1.0: this run records "
                                                                    "regdeploy 0.2.0")),
    (["regdeploy 0.2.0"], VersionRecord(False, "regdeploy 0.2.0\n", "managed by regdeploy 0.2.0")),
    (["regdeploy 0.2.0 "], VersionRecord(False, "regdeploy 0.2.0\n", "managed by regdeploy 0.2.0")),
])
def test_the_record_is_written_only_when_it_names_another_version(lines, expected):
    assert plan_version_record(lines, "0.2.0") == expected
