"""The layers: decisions in regdeploy/ never import pyinfra; tasks/ turns their plans into operations,
and unit tests reach only regdeploy/."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The modules that talk to pyinfra: its facts and operations, the deploy entry point, the inventory
# and connector the CLI uses, and the CLI itself.
PYINFRA_EDGE = {"cli", "deploys", "facts", "inventory", "operations", "remote"}
DECISIONS = sorted(p.stem for p in (ROOT / "regdeploy").glob("*.py")
                   if p.stem not in PYINFRA_EDGE | {"__init__", "__main__"})


def test_the_decision_modules_never_import_pyinfra():
    assert {"host_plan", "host_state", "registry_plan", "daemon_config", "runtimes", "settings"} <= set(DECISIONS)
    # In a fresh interpreter, one module after another: the first after which pyinfra is loaded is named.
    probe = ("import importlib, json, sys\n"
             f"for name in {DECISIONS!r}:\n"
             "    importlib.import_module('regdeploy.' + name)\n"
             "    if any(m == 'pyinfra' or m.startswith('pyinfra.') for m in sys.modules):\n"
             "        print(json.dumps(name)); break\n"
             "else:\n"
             "    print(json.dumps(None))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(result.stdout) is None, f"regdeploy.{json.loads(result.stdout)} imports pyinfra"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_unit_tests_import_nothing_from_tasks():
    for path in sorted((ROOT / "tests" / "unit").glob("*.py")):
        reached = {name for name in _imports(path) if name.startswith(("tasks", "regdeploy.tasks"))}
        assert not reached, f"{path.name} imports {sorted(reached)}: test the decision in regdeploy/ instead"


def test_tasks_never_read_the_fact_as_a_dict():
    for path in [*sorted((ROOT / "tasks").glob("*.py")), ROOT / "deploy.py", ROOT / "regdeploy" / "deploys.py"]:
        assert 'state["' not in path.read_text(), f"{path.name}: read HostState's fields, not keys"


def test_the_lab_modules_import_each_other_without_a_cycle():
    modules = {p.stem: p for p in (ROOT / "lab").glob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        edges[name] = found & set(modules)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start])

    assert edges["vm"] and edges["hosts"], "the graph was read"
    assert [m for m in modules if reaches(m, m, set())] == []


def test_every_test_module_has_a_name_of_its_own():
    """pytest imports test modules by basename (the test folders are not packages): two folders with a
    test_x.py each stop a whole run at collection."""
    root = Path(__file__).resolve().parents[1]
    names: dict[str, list[str]] = {}
    for path in root.rglob("test_*.py"):
        names.setdefault(path.name, []).append(str(path.relative_to(root)))
    assert not {name: paths for name, paths in names.items() if len(paths) > 1}
