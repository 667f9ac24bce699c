"""The package's wings follow the data flow of a run: an import points from a later stage to an earlier one."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "loralab"
# Stages in the order a run passes through them; the top-level modules (atomic_*, cli) sit below and above them all.
STAGES = ["atomic_file", "atomic_folder", "plan", "params", "model", "data", "train", "adapters", "export", "eval", "runs", "sweeps", "cli"]
WINGS = [stage for stage in STAGES if (PACKAGE / stage).is_dir()]  # the subpackages


def _wing(module: str) -> str:
    """loralab.model.loading -> 'model'; loralab.cli -> 'cli'."""
    return module.split(".")[1]


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every loralab module a file imports (module level or inside functions), with its line number."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loralab."):
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("loralab.")]
    return found


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_every_module_lives_in_a_wing():
    loose = [name for name in _modules() if name.count(".") == 1 and _wing(name) not in STAGES]
    assert not loose, f"modules outside the stage subpackages: {loose}"


def test_imports_point_from_a_later_stage_to_an_earlier_one():
    backwards = []
    for name, path in _modules().items():
        if name == "loralab":
            continue
        here = STAGES.index(_wing(name))
        for imported, line in _imports(path):
            if STAGES.index(_wing(imported)) > here:
                backwards.append(f"{path.relative_to(PACKAGE)}:{line} ({_wing(name)}) imports {imported}")
    assert not backwards, "imports that point to a later stage:\n" + "\n".join(backwards)


def test_no_import_cycles_between_modules():
    """Wing __init__ files only re-export; among the modules that do the work there is no cycle."""
    modules = {n: p for n, p in _modules().items() if p.name != "__init__.py"}
    graph = {name: {m for m, _ in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        for nxt in sorted(graph[name]):
            if nxt in path:
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(name)

    done: set[str] = set()
    for start in sorted(graph):
        if start not in done:
            visit(start, [start])
    assert not cycles, f"import cycles: {cycles}"


def test_plan_wing_imports_without_torch():
    names = [n for n in _modules() if n == "loralab.plan" or n.startswith("loralab.plan.")]
    code = f"import sys; import {', '.join(names)}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_wing_names_what_a_notebook_calls():
    """Every name a wing's __init__ exports exists, and every notebook import of loralab resolves."""
    import importlib
    import json

    for stage in WINGS:
        wing = importlib.import_module(f"loralab.{stage}")
        assert wing.__doc__ and wing.__all__, f"loralab.{stage} needs a docstring and __all__"
        missing = [n for n in wing.__all__ if not hasattr(wing, n)]
        assert not missing, f"loralab.{stage}.__all__ names {missing}, which it does not define"
    for notebook in sorted((PACKAGE.parents[1] / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            lines = [line[: len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.split("\n")]
            tree = ast.parse("\n".join(lines))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("loralab"):
                    module = importlib.import_module(node.module)
                    absent = [a.name for a in node.names if not hasattr(module, a.name)]
                    assert not absent, f"{notebook.name}: {node.module} has no {absent}"


def test_repository_root_is_found_from_the_wings():
    """One module finds the checkout (runs folder, sweeps folder, notebooks): the repository root, not src/."""
    from loralab.runs.shipped import checkout_root, notebooks_dir, params_dir

    assert checkout_root() == PACKAGE.parents[1]
    assert (checkout_root() / "pyproject.toml").is_file()
    assert notebooks_dir() == PACKAGE.parents[1] / "notebooks" and params_dir() == PACKAGE.parents[1] / "params"
    computed = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
                if "parents[3]" in path.read_text() and path.name != "shipped.py"]
    assert not computed, f"modules that compute the repository root themselves (use loralab.runs.shipped): {computed}"


def test_notebook_demo_helpers_are_not_public_api():
    """What only notebook 03's demo uses is imported from its module, not re-exported by a wing."""
    import importlib

    demo_only = {"caps_rows", "train_adapter", "base_with_changed_template",
                 "base_with_one_weight_changed"}
    exported = {name for stage in WINGS for name in importlib.import_module(f"loralab.{stage}").__all__}
    assert not demo_only & exported, f"demo helpers in a wing's __all__: {sorted(demo_only & exported)}"

