"""A second "Run all" in one kernel uses the parameters just edited; a misspelt injected name is still refused.

nbclient runs notebook 01's cells from the install cell to the LoRA cell in one kernel, on the tiny random
model, as Jupyter's "Run all" does: once with lora_r = 8, then again after the parameters cell was edited to
lora_r = 4 (the adapter must be built with r = 4), then with a cell like papermill's injected one holding a
misspelt name (the validation cell must refuse it).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_qlora_finetune.ipynb"


def _with(source: str, **values) -> str:
    """The parameters cell's source with some values replaced (one ``name = value  # comment`` per line)."""
    lines = []
    for line in source.splitlines():
        name = line.split(" = ", 1)[0]
        lines.append(f"{name} = {values[name]!r}  # edited" if name in values else line)
    return "\n".join(lines)


def _probe(client, nb, code: str) -> str:
    cell = nbformat.v4.new_code_cell(code)
    nb.cells.append(cell)
    client.execute_cell(cell, len(nb.cells) - 1)
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream").strip()


@pytest.mark.slow
def test_run_all_twice_in_one_kernel_trains_with_the_edit(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    lora = next(i for i, c in enumerate(nb.cells) if "get_peft_model(" in c.source)
    run_all = [i for i in range(lora + 1) if nb.cells[i].cell_type == "code"]
    original = nb.cells[params].source
    first = {"model_name": "embedded/tiny-random-llama", "run_dir": str(tmp_path / "run"), "lora_r": 8}
    nb.cells[params].source = _with(original, **first)
    client = NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(REPO / "notebooks")}})
    with client.setup_kernel():
        for i in run_all:
            client.execute_cell(nb.cells[i], i)
        assert _probe(client, nb, "print(cfg.lora_r, model.peft_config['default'].r)") == "8 8"

        nb.cells[params].source = _with(original, **(first | {"lora_r": 4}))  # the reader edits r, then Run all
        for i in run_all:
            client.execute_cell(nb.cells[i], i)
        assert _probe(client, nb, "print(cfg.lora_r, model.peft_config['default'].r)") == "4 4"

        injected = nbformat.v4.new_code_cell("# Parameters\nlora_rnak = 2\n", metadata={"tags": ["injected-parameters"]})
        nb.cells.insert(params + 1, injected)
        validation = params + 2
        for i in [j for j in range(validation) if nb.cells[j].cell_type == "code"]:
            client.execute_cell(nb.cells[i], i)
        with pytest.raises(CellExecutionError, match="unknown parameter 'lora_rnak'. Did you mean 'lora_r'"):
            client.execute_cell(nb.cells[validation], validation)


@pytest.mark.parametrize("name", ["00_lora_basics", "01_qlora_finetune", "03_adapters", "04_preference_tuning",
                                  "05_grpo"])
def test_no_cell_after_the_parameters_overwrites_a_parameter(name):
    """A later cell that assigned a parameter's name (``run_dir = new_run_dir(cfg)``) would hand that value to
    the next "Run all" in the same kernel, where the validation cell reads every parameter's name."""
    import ast

    from loralab.params.contracts import CONTRACTS

    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    fields = set(CONTRACTS[name].schema.model_fields) | {"params_file"}
    for cell in nb.cells[params + 1:]:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        for node in ast.walk(ast.parse(source)):
            targets = [node.id] if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) else []
            assert not set(targets) & fields, f"{name}: a cell assigns the parameter {targets}: {cell.source[:80]}"


def test_notebook_01_stays_short():
    """The tutorial's code, install cell included, in fewer lines than the 170 it took when loralab wrapped the stack."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    lines = sum(len(c.source.splitlines()) for c in nb.cells if c.cell_type == "code")
    assert lines < 170, f"notebook 01's code cells hold {lines} lines"
