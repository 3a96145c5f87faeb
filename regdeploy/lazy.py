"""Modules imported on first use (the standard library's importlib.util.LazyLoader recipe).

Every pyinfra run imports regdeploy on the controller before it asks any host anything; `cryptography`
(TLS modes) and `tomlkit` (containerd hosts) are large imports that most runs never use.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """`name`, loaded when one of its attributes is first read (at once if it is loaded already)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ImportError(f"No module named {name!r}")
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
