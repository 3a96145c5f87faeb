"""Render the files in templates/ (registry config, apply script) with strict undefined variables."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jinja2

# A checkout keeps templates/ beside the package; `pip install .` puts them in regdeploy/templates.
_CHECKOUT_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TEMPLATES_DIR = _CHECKOUT_TEMPLATES if _CHECKOUT_TEMPLATES.is_dir() else Path(__file__).resolve().parent / "templates"

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
# Everything substituted into a shell script goes through `quote`.
_environment.filters["quote"] = lambda value: shlex.quote(str(value))
# And everything substituted into YAML as a value goes through `yaml_string` (a JSON string is a YAML one).
_environment.filters["yaml_string"] = lambda value: json.dumps(str(value))


def render(template: str, **variables) -> str:
    return _environment.get_template(template).render(**variables)
