"""constraints/lowest.txt (what `make test-lowest` installs) agrees with pyproject.toml's lower bounds.

The file is written by scripts/lowest_constraints.py, which asks PyPI; this checks it offline: every lower bound
the script holds at its floor is pinned there at that floor, and every pin satisfies pyproject's requirement.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("lowest_constraints", REPO / "scripts" / "lowest_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (REPO / "constraints" / "lowest.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _direct() -> list[Requirement]:
    return _script().direct_requirements(tomllib.loads((REPO / "pyproject.toml").read_text())["project"])


@pytest.mark.parametrize("requirement", _direct(), ids=str)
def test_each_lower_bound_is_pinned_at_its_floor(requirement):
    pins = _pins()
    name = canonicalize_name(requirement.name)
    assert name in pins, f"constraints/lowest.txt has no {name}: make constraints-lowest"
    pinned = pins[name]
    assert requirement.specifier.contains(pinned, prereleases=True), f"{name}=={pinned} is outside {requirement}"
    if name != "torch":  # the Makefile's TORCH_SPEC, not the range's floor
        floor = Version(_script().lower_bound(requirement))
        assert pinned.release[: len(floor.release)] == floor.release, (
            f"{name} is pinned at {pinned}, not at its lower bound {floor}: make constraints-lowest")


def test_an_unbounded_core_dependency_is_refused():
    project = {"dependencies": ["numpy"], "optional-dependencies": {extra: [] for extra in
                                                                   ("unsloth-deps", "tracking", "docs", "dev", "unsloth")}}
    with pytest.raises(SystemExit, match="no lower bound in pyproject.toml for numpy"):
        _script().direct_requirements(project)


def test_the_gpu_only_packages_are_left_out():
    assert not {"torchvision", "triton", "xformers", "cut-cross-entropy"} & set(_pins())


def _loralab_models() -> list[type]:
    """Every pydantic model that loralab defines (in the modules that name BaseModel)."""
    import importlib

    from pydantic import BaseModel

    for path in (REPO / "src" / "loralab").rglob("*.py"):
        if "BaseModel" in path.read_text():
            importlib.import_module(".".join(path.relative_to(REPO / "src").with_suffix("").parts))
    found, todo = [], list(BaseModel.__subclasses__())
    while todo:
        model = todo.pop()
        todo += model.__subclasses__()
        if model.__module__.startswith("loralab."):
            found.append(model)
    return found


def test_a_model_field_named_model_something_does_not_warn_on_the_lowest_pydantic():
    """pydantic before 2.10 warns at import about any field named `model_...` unless its model clears
    protected_namespaces; pyproject allows pydantic 2.6, so each such model says so, whatever pydantic runs here."""
    models = _loralab_models()
    assert any(model.__name__ == "RunConfig" for model in models)
    for model in models:
        if any(name.startswith("model_") for name in model.model_fields):
            assert model.model_config.get("protected_namespaces") == (), (
                f"{model.__module__}.{model.__name__} has a model_ field: set protected_namespaces=() in its "
                f"model_config (pydantic < 2.10 warns about it at import)")
