"""The README's variables table is the defaults module's, and every variable is read somewhere."""

from pathlib import Path

from regdeploy.defaults import DEFAULTS, markdown_table
from regdeploy.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_matches_the_defaults():
    text = README.read_text()
    table = text.split("<!-- variables:start -->\n", 1)[1].split("\n<!-- variables:end -->", 1)[0]
    assert table == markdown_table(), "regenerate it with: python -m regdeploy.defaults"


def test_every_default_is_a_setting():
    fields = set(Settings.__dataclass_fields__)
    assert set(DEFAULTS) <= fields
