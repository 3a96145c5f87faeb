"""Settings hold one typed field per variable, and every variable is read somewhere (the variables
page of the docs is generated from the same declarations: tests/unit/test_docs.py)."""

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from regdeploy.settings import SHARED, Settings
from regdeploy.variables import VARIABLES

ROOT = Path(__file__).resolve().parents[2]


# Where a variable can be read: the decisions, the tasks, the templates. variables.py declares them
# and the Settings class lists them, so neither counts.
SOURCES = [p for p in (ROOT / "regdeploy").glob("*.py") if p.name != "variables.py"] \
    + sorted((ROOT / "tasks").glob("*.py")) + sorted((ROOT / "templates").glob("*/*.j2"))


def _reads(name: str, text: str) -> bool:
    """Whether `text` reads the variable: an attribute (settings.NAME) or a validation lookup
    (values["NAME"]); a Settings field declaration ("    NAME: type") is not a read."""
    return re.search(rf"\.{name}\b|\[\"{name}\"\]|\(\"{name}\"", text) is not None


@pytest.mark.parametrize("variable", [v.name for v in VARIABLES])
def test_every_variable_is_read_by_the_code(variable):
    assert any(_reads(variable, path.read_text()) for path in SOURCES), \
        f"{variable} is declared in variables.py but nothing reads it: remove it or use it"


def test_an_unread_variable_would_be_named():
    assert not any(_reads("registry_nothing_reads_this", path.read_text()) for path in SOURCES)
    assert _reads("registry_port", "x = settings.registry_port + 1")
    assert _reads("registry_port", "values[\"registry_port\"]")
    assert not _reads("registry_port", "    registry_port: int")


def test_settings_has_one_typed_field_per_variable_and_nothing_else():
    hints = typing.get_type_hints(Settings)
    assert [f.name for f in dataclasses.fields(Settings)] == [
        "host_name", *(v.name for v in VARIABLES), "is_server", "server_names", "serves_cache", "is_lb",
        "uses_registry", "replicas", "lbs"]
    for variable in VARIABLES:
        hint = hints[variable.name]
        assert (typing.get_origin(hint) or hint) is variable.kind.type, variable.name
        if variable.kind.type is tuple:
            assert typing.get_args(hint) == (str, ...), variable.name
        # Every default passes its own check, as the value it stands for.
        assert isinstance(variable.kind.parse(variable.name, variable.default), variable.kind.type), variable.name


def test_shared_variables_are_declared_as_such():
    # Every host talks to the same registry: what its address, security and storage are must agree.
    assert {"registry_tls", "registry_auth", "registry_storage", "registry_s3_bucket"} <= set(SHARED)
    assert "registry_port" not in SHARED  # checked as part of the registry address instead
    assert SHARED == tuple(v.name for v in VARIABLES if v.shared)


@pytest.mark.parametrize("name,raw,value", [
    ("registry_port", "5001", 5001),
    ("registry_mirrors", "https://a.example, https://b.example", ("https://a.example", "https://b.example")),
    ("registry_mirrors", ["https://a.example"], ("https://a.example",)),
    ("registry_data_dir", "/srv/registry/", "/srv/registry"),
    ("docker_ce_repo_url", "https://mirror.example/linux/", "https://mirror.example/linux"),
    ("registry_image_archive_sha256", "AB" * 32, "ab" * 32),
    ("registry_host", "", ""),
])
def test_kinds_turn_raw_values_into_settings(name, raw, value):
    variable = next(v for v in VARIABLES if v.name == name)
    assert variable.kind.parse(name, raw) == value
