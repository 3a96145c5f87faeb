"""The README's variables table is the defaults module's, and every variable is read somewhere."""

from pathlib import Path

import pytest

from regdeploy.variables import DEFAULTS, markdown_table
from regdeploy.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_the_defaults():
    text = README.read_text()
    table = text.split("<!-- variables:start -->\n", 1)[1].split("\n<!-- variables:end -->", 1)[0]
    assert table == markdown_table(), "regenerate it with: python -m regdeploy.variables"


def test_every_default_is_a_setting():
    fields = set(Settings.__dataclass_fields__)
    assert set(DEFAULTS) <= fields


def test_settings_has_one_typed_field_per_variable_and_nothing_else():
    from regdeploy.variables import VARIABLES

    fields = Settings.__dataclass_fields__
    assert list(fields) == ["host_name", *(v.name for v in VARIABLES), "is_server", "server_names", "serves_cache",
                            "is_lb", "uses_registry", "replicas", "lb"]
    for variable in VARIABLES:
        assert fields[variable.name].type is variable.kind.type, variable.name
        # Every default passes its own check, as the value it stands for.
        assert isinstance(variable.kind.parse(variable.name, variable.default), variable.kind.type), variable.name


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
    from regdeploy.variables import VARIABLES

    variable = next(v for v in VARIABLES if v.name == name)
    assert variable.kind.parse(name, raw) == value
