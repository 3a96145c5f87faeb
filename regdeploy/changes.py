"""What a change does to a file, as an operator reads it in `--dry` (and in every run's output):
key by key for JSON, a unified diff for text. Values of secret-looking keys never appear."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

# A key whose value is a secret, in YAML (`secret: x`), JSON (`"password": "x"`) or key=value text.
_SECRET_LINE = re.compile(r'^(\s*"?[\w.-]*(?:secret|password|passwd|token|credential)[\w.-]*"?\s*[:=]\s*).+$',
                          re.IGNORECASE)
_SECRET_KEY = re.compile(r"secret|password|passwd|token|credential", re.IGNORECASE)
HIDDEN = "(hidden)"


def _show(key: str, value: Any) -> str:
    return HIDDEN if _SECRET_KEY.search(key) else json.dumps(value)


def json_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """One line per change, e.g. `insecure-registries: + "registry:5001"` or `debug: false -> true`."""
    lines = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key not in old:
            lines.append(f"{key}: (absent) -> {_show(key, after)}")
        elif key not in new:
            lines.append(f"{key}: {_show(key, before)} -> (absent)")
        elif isinstance(before, list) and isinstance(after, list) and not _SECRET_KEY.search(key):
            lines += [f"{key}: + {json.dumps(entry)}" for entry in after if entry not in before]
            lines += [f"{key}: - {json.dumps(entry)}" for entry in before if entry not in after]
        else:
            lines.append(f"{key}: {_show(key, before)} -> {_show(key, after)}")
    return lines


def mask_secrets(lines: list[str]) -> list[str]:
    return [_SECRET_LINE.sub(lambda m: m.group(1) + HIDDEN, line) for line in lines]


def text_diff(old: str | None, new: str, path: str) -> list[str]:
    """A unified diff of a text file (old None: the file is new), secrets masked on both sides."""
    before = mask_secrets((old or "").splitlines())
    after = mask_secrets(new.splitlines())
    return list(difflib.unified_diff(before, after, fromfile=f"{path} (on the host)" if old is not None
                                     else "/dev/null", tofile=f"{path} (regdeploy)", lineterm="", n=2))
