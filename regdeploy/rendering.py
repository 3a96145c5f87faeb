"""Render the files in templates/ (registry config, apply script) with strict undefined variables."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import jinja2

# An installed wheel has them in regdeploy/templates; a checkout (an editable install too) keeps
# templates/ beside the package. The package's own come first: site-packages may hold another
# project's top-level `templates` folder.
_PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
TEMPLATES_DIR = _PACKAGE_TEMPLATES if _PACKAGE_TEMPLATES.is_dir() else Path(__file__).resolve().parent.parent / "templates"
# templates/ by what each file is; a template is named without its folder (names are unique across them):
# - facts: the scripts whose output a pyinfra fact parses (and the parts only they include);
# - actions: the scripts that change a host, or read a registry for the CLI;
# - config: files written on hosts as they are (config.yml, haproxy.cfg, systemd units);
# - parts: shell included by several scripts (the deploy lock, the registry API, read-only mode).
TEMPLATE_GROUPS = ("facts", "actions", "config", "parts")


def template_paths() -> dict[str, Path]:
    """{template name: its file}, every group's."""
    return {path.name: path for group in TEMPLATE_GROUPS for path in sorted((TEMPLATES_DIR / group).glob("*.j2"))}


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs (the fact's template is large: compiling it would cost every deploy),
    in jinja's own per-user directory (/tmp/_jinja2-cache-UID, mode 0700, its owner checked), keyed by
    each template's source. A cache that cannot be read or written is only slower, never an error."""

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except (OSError, RuntimeError, ValueError, EOFError):
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except (OSError, RuntimeError):
            pass


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    # As Python's own cache: off where the operator turned bytecode caches off.
    if sys.dont_write_bytecode:
        return None
    try:
        return _BytecodeCache()
    except (OSError, RuntimeError):  # no usable temporary directory
        return None


_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader([str(TEMPLATES_DIR / group) for group in TEMPLATE_GROUPS]),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    bytecode_cache=_bytecode_cache(),
)
# Everything substituted into a shell script goes through `quote`.
_environment.filters["quote"] = lambda value: shlex.quote(str(value))
# And everything substituted into YAML as a value goes through `yaml_string` (a JSON string is a YAML one).
_environment.filters["yaml_string"] = lambda value: json.dumps(str(value))


def render(template: str, **variables) -> str:
    return _environment.get_template(template).render(**variables)
