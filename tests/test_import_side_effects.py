"""Importing loralab only imports: no exit handlers, no garbage-collector settings, no patched stdlib functions.

A notebook, a test or another library that imports loralab keeps its process as it was; what a loralab function
does when called (a ``gc.collect()`` after dropping a model, say) is its caller's choice.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import loralab

PACKAGE = Path(loralab.__file__).resolve().parent  # the loralab this test imported (PYTHONPATH may point elsewhere)
WINGS = ["params", "model", "data", "train", "eval", "runs", "adapters"]  # the wings a notebook imports

PROBE = r"""
import atexit, gc, importlib.metadata, json, sys
import logging  # stdlib: its first import registers logging.shutdown; a notebook kernel has imported it already

def state():
    return {"exit handlers": atexit._ncallbacks(), "collector enabled": gc.isenabled(),
            "collector thresholds": list(gc.get_threshold()), "frozen objects": gc.get_freeze_count(),
            "importlib.metadata.packages_distributions": repr(importlib.metadata.packages_distributions)}

before = state()
import loralab
""" + "".join(f"import loralab.{wing}\n" for wing in WINGS) + r"""
print(json.dumps({"before": before, "after": state(), "loralab": loralab.__file__}))
"""


def test_importing_loralab_and_its_wings_leaves_the_process_as_it_was():
    path = os.pathsep.join(filter(None, [str(PACKAGE.parent), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", PROBE], check=False, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(seen["loralab"]).resolve().parent == PACKAGE
    changed = {key: (was, seen["after"][key]) for key, was in seen["before"].items() if seen["after"][key] != was}
    assert not changed, f"importing loralab and its wings changed the process (before, after): {changed}"


def _stdlib_modules(tree: ast.Module) -> set[str]:
    """The names a file binds to standard-library modules (``import importlib.metadata`` binds ``importlib``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in sys.stdlib_module_names:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.split(".")[0] in sys.stdlib_module_names):
            names.update(alias.asname or alias.name for alias in node.names)  # a submodule or a function
    return names


def _root(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _process_tricks(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """Exit handlers, collector settings (``gc.collect()`` is the one gc call allowed), stdlib attributes replaced."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stdlib = _stdlib_modules(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if any(m.split(".")[0] == "atexit" for m in modules):
                found.append(f"{where}: imports atexit")
            if isinstance(node, ast.ImportFrom) and node.module == "gc":
                found.append(f"{where}: from gc import ...")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "gc"
              and node.attr != "collect"):
            found.append(f"{where}: gc.{node.attr}")
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _root(target) in stdlib:
                    found.append(f"{where}: replaces {ast.unparse(target)}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr")
                and node.args and _root(node.args[0]) in stdlib):
            found.append(f"{where}: {node.func.id}({ast.unparse(node.args[0])}, ...)")
    return sorted(found, key=lambda line: int(line.split(":")[1]))


def test_no_module_registers_exit_handlers_sets_the_collector_or_patches_the_stdlib():
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _process_tricks(path)]
    assert not found, "process-wide tricks in loralab:\n" + "\n".join(found)


def test_the_static_check_sees_each_trick(tmp_path):
    """The old loralab.quick_exit / quick_imports, in short: each line is one thing the check must name."""
    tricks = tmp_path / "tricks.py"
    tricks.write_text("import atexit, gc\nimport importlib.metadata\nfrom gc import freeze\n"
                      "atexit.register(print)\ngc.disable()\ngc.freeze()\ngc.collect()\n"
                      "importlib.metadata.packages_distributions = dict\nsetattr(importlib.metadata, 'version', str)\n")
    found = _process_tricks(tricks, tmp_path)
    assert sorted(found) == [
        "tricks.py:1: imports atexit", "tricks.py:3: from gc import ...", "tricks.py:5: gc.disable",
        "tricks.py:6: gc.freeze", "tricks.py:8: replaces importlib.metadata.packages_distributions",
        "tricks.py:9: setattr(importlib.metadata, ...)"], found
