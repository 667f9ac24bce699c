"""Notebook 00 (LoRA basics) runs under papermill on CPU and its checks hold."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "00_lora_basics.ipynb"


def test_notebook_00_is_committed_clean_with_one_parameters_cell():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "strip outputs before committing"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for line in nb.cells[tagged[0]].source.splitlines():
        name, _, rest = line.partition(" = ")
        assert name.isidentifier() and "  # " in rest, (
            f"parameters line needs `name = value  # comment`: {line}"
        )
        json.loads(rest.split("  # ")[0])  # JSON-type value


@pytest.mark.slow
def test_notebook_00_runs_and_its_checks_pass(tmp_path):
    import papermill

    out_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "00_lora_basics.ipynb"),
        parameters={"run_dir": str(out_dir), "reader_answer": 131072, "max_steps": 150},
        kernel_name="python3",
        cwd=str(REPO),
        progress_bar=False,
        execution_timeout=600,
    )
    checks = json.loads((out_dir / "checks.json").read_text())
    assert checks["W_unchanged"] is True
    assert checks["update_rank_le_r"] is True and 1 <= checks["update_rank"] <= 4
    assert checks["loss_dropped"] is True
    assert checks["layer_peft_count_matches"] and checks["whole_model_counts_match_peft"]
    assert checks["tutorial_4096_r16"] and checks["update_linear_in_alpha"]
    assert checks["t4_8b_decision"] == "qlora" and checks["h100_70b_decision"] == "qlora"
    assert all(
        checks[k]
        for k in (
            "pitfall_large_rank",
            "pitfall_alpha",
            "pitfall_attention_only",
            "pitfall_4bit",
            "pitfall_base_recorded",
        )
    )
    assert checks["exercise"] == "correct"
    mem = checks["memory_gib"]
    assert mem["llama-3.1-8b/qlora"] < mem["llama-3.1-8b/lora"] < mem["llama-3.1-8b/full"]
    assert (out_dir / "memory_by_method.png").stat().st_size > 10_000
    assert not list((REPO / "notebooks").glob("*.png")), "plots must go to run_dir, not notebooks/"
