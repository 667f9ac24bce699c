"""One contract per notebook: the schema is the one source of every default, and a notebook is known by its
contract (its metadata), not its file name.

Every shipped notebook names its contract; its parameters cell is the one rendered from the schema, and
papermill reads from it every parameter with the schema's default. A renamed copy of notebook 01 is
validated, finds notebook 01's params files and receives its run folder like the original (the copy's
resume and 2-process training: tests/test_data_parallel.py). eval_scorers follow the data.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest

from loralab.params.contracts import CONTRACTS, contract_of, literal, parameters_cell, parameters_cell_index
from loralab.params.grpo_config import GrpoConfig
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# Notebook 04's schema is notebook 01's plus the preference knobs; these of 01's are not parameters of 04.
NOT_IN_04 = {"trust_remote_code", "full_finetuning", "overlong_rows", "eval_fraction", "eval_steps",
             "early_stopping_patience", "weight_decay", "packing", "num_processes", "num_nodes",
             "parallel_strategy", "master_addr", "master_port", "answer_column"}

# Notebook 05's schema is notebook 01's plus GRPO's knobs: the held-out prompts are scored with its rewards.
NOT_IN_05 = NOT_IN_04 | {"eval_scorers", "retention_tasks", "retention_limit", "prompt_template", "system_prompt",
                         "use_rslora", "use_dora", "init_lora_weights", "loraplus_lr_ratio"}


def _cell(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    return "".join(cells[parameters_cell_index(cells)]["source"])


def test_every_shipped_notebook_names_its_contract():
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted(CONTRACTS)
    for name in CONTRACTS:
        metadata = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["metadata"]
        assert metadata["loralab"] == {"contract": name}


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_the_parameters_cell_is_the_one_rendered_from_the_schema(name):
    """Regenerate with: python -m loralab.runs.notebook_cells"""
    assert _cell(NOTEBOOKS / f"{name}.ipynb") == parameters_cell(CONTRACTS[name])


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_papermill_reads_every_parameter_with_the_schemas_default(name):
    """Value for value, as papermill parses the cell (a line it cannot parse would hide a parameter)."""
    from papermill.inspection import inspect_notebook

    contract = CONTRACTS[name]
    seen = inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    if contract.takes_params_file:  # params_file first, then the knobs with their short comments
        assert ast.literal_eval(seen.pop("params_file")["default"]) == ""
    assert list(seen) == contract.names
    comments = dict(contract.knobs)
    for param, info in seen.items():
        field = contract.schema.model_fields[param]
        default = field.default_factory() if field.default_factory else field.default
        assert ast.literal_eval(info["default"]) == default, param
        assert info["help"] == comments.get(param, field.description), param
        if contract.knobs:
            assert len(info["help"]) <= 100, f"{param}: a parameters-cell comment of at most 100 characters"


def test_each_schema_field_has_one_place_the_knobs_first():
    for contract in CONTRACTS.values():
        names = contract.all_names
        assert len(names) == len(set(names)), contract.name
        hidden = set(contract.schema.model_fields) - set(names)
        expected = {PreferenceConfig: NOT_IN_04, GrpoConfig: NOT_IN_05}.get(contract.schema, set())
        assert hidden == expected, contract.name
        assert len(contract.names) + bool(contract.knobs) <= 15 or not contract.knobs, \
            "a parameters cell of knobs holds at most 15 names, params_file included"
        assert len(contract.cell[0][1]) <= 15, "the first group is what a tutorial reader changes first"
    first = CONTRACTS["01_qlora_finetune"].names
    assert {"model_name", "dataset", "lora_r", "lora_alpha", "target_modules", "load_in_4bit", "max_steps",
            "learning_rate", "eval_scorers"} <= set(first)
    assert "master_port" not in first


def test_one_name_per_idea_and_the_old_names_are_refused_naming_the_new_one():
    """Every notebook uses notebook 01's name for an idea (run_dir, model_name, max_steps, lora_r...); a name a
    notebook used before is refused, in every schema that has the new one, with the one sentence."""
    from loralab.params.errors import ParamsError
    from loralab.params.schema import RENAMED, validate_against

    refused = 0
    for contract in CONTRACTS.values():
        fields = set(contract.schema.model_fields)
        assert not fields & set(RENAMED), f"{contract.name} still has {fields & set(RENAMED)}"
        assert contract.folder_param in (None, "run_dir"), contract.name
        for old, new in RENAMED.items():
            if new in fields:
                with pytest.raises(ParamsError) as error:
                    validate_against(contract.schema, {old: 1})
                assert str(error.value) == f"params: {old!r} is now {new!r}.", contract.name
                refused += 1
    assert refused >= 30


def test_notebook_04s_hidden_fields_keep_defaults_it_accepts():
    cfg = PreferenceConfig()
    assert cfg.world_size == 1 and cfg.packing == "none" and not cfg.full_finetuning


def test_literals_read_back_as_the_value():
    for value in (2e-4, 5e-4, 0.003, 0.0, 0.05, 1e-10, 3407, True, None, "", "a 'b'", ["x", "y"], {}, 1.5e6):
        assert ast.literal_eval(literal(value)) == value
    assert literal(2e-4) == "2e-4" and literal(0.003) == "0.003"


def test_a_description_with_an_equals_sign_is_refused():
    """papermill skips a parameters-cell line holding a second '=': the parameter would vanish."""
    from pydantic import BaseModel, Field

    from loralab.params.contracts import NotebookContract

    class Bad(BaseModel):
        steps: int = Field(1, description="0 = none")

    with pytest.raises(ValueError, match="without '='"):
        parameters_cell(NotebookContract("bad", Bad, (("", ("steps",)),)))


# --- a notebook known by its contract, whatever the file is called ----------------------------------

@pytest.fixture
def copy_of_01(tmp_path) -> Path:
    copy = tmp_path / "lab" / "my_finetune.ipynb"
    copy.parent.mkdir()
    shutil.copy(NOTEBOOKS / "01_qlora_finetune.ipynb", copy)
    return copy


def test_a_renamed_copy_follows_the_original_contract(copy_of_01):
    assert contract_of(copy_of_01) is CONTRACTS["01_qlora_finetune"]


def test_a_copy_made_before_notebooks_named_their_contract_is_known_by_its_file_name(tmp_path):
    nb = json.loads((NOTEBOOKS / "01_qlora_finetune.ipynb").read_text())
    del nb["metadata"]["loralab"]
    (tmp_path / "01_qlora_finetune.ipynb").write_text(json.dumps(nb))
    (tmp_path / "mine.ipynb").write_text(json.dumps(nb))
    assert contract_of(tmp_path / "01_qlora_finetune.ipynb") is CONTRACTS["01_qlora_finetune"]
    assert contract_of(tmp_path / "mine.ipynb") is None


def test_a_renamed_copy_is_run_like_the_original(copy_of_01, tmp_path, monkeypatch, capsys):
    """Validated in full before the kernel, notebook 01's params files found by name, the run folder in
    run_dir; a bad value is refused in one line with no run folder."""
    from loralab.cli import main
    from loralab.runs import runner
    from loralab.runs.record import read_run_record

    started = []
    monkeypatch.setattr(runner, "_execute", lambda notebook, run_dir, params, folder_param, timeout_s:
                        started.append((notebook.name, folder_param, params)))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(copy_of_01), "-p", "lora_r", "0", "--runs-root", "runs"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: ") and "lora_r" in out and len(out.strip().splitlines()) == 1, out
    assert not started and not (tmp_path / "runs").exists()

    assert main(["run", str(copy_of_01), "-f", "smoke.yaml", "-p", "model_name", "embedded/tiny-random-llama",
                 "--runs-root", "runs"]) == 0
    assert "using the shipped" in capsys.readouterr().out
    [(name, folder_param, params)] = started
    assert name == "my_finetune.ipynb" and folder_param == "run_dir"
    record = read_run_record(next((tmp_path / "runs").iterdir()))
    assert record["resolved_params"] == json.loads(json.dumps(RunConfig(**params).model_dump()))


# --- defaults that follow the data --------------------------------------------------------------------

def test_scorers_default_to_the_embedded_tasks_own():
    assert RunConfig().eval_scorers == ["json_shape", "json_topic", "json_answer"]
    assert RunConfig(dataset="embedded/short-answers", eval_dataset="embedded/short-answers").eval_scorers[1:] == [
        "contains", "chrf"]
    assert PreferenceConfig().eval_scorers == ["regex:^The answer is [^.!?]+[.!?]$", "contains"]
    assert RunConfig().scorers_hint is None


def test_own_data_gets_held_out_loss_alone_and_a_line_naming_scorers_that_may_fit(tmp_path):
    cfg = RunConfig(dataset=str(tmp_path / "my.jsonl"), eval_dataset=str(tmp_path / "my_eval.jsonl"))
    assert cfg.eval_scorers == []
    assert "my_eval.jsonl" in cfg.scorers_hint and "exact_match" in cfg.scorers_hint
    chosen = RunConfig(dataset="my.jsonl", eval_dataset="my_eval.jsonl", eval_scorers=["contains"])
    assert chosen.eval_scorers == ["contains"] and chosen.scorers_hint is None
    assert RunConfig(dataset="my.jsonl", eval_dataset="").eval_scorers == []  # no held-out rows: nothing to score
    # the trained task decides: the embedded task held out in a file of the user's still gets its scorers
    assert PreferenceConfig(eval_dataset=str(tmp_path / "pairs.jsonl")).eval_scorers == PreferenceConfig().eval_scorers


def test_help_notebook_lists_the_parameters_of_a_renamed_copy(copy_of_01, tmp_path, capsys):
    from loralab.cli import main

    assert main(["run", str(copy_of_01), "--help-notebook"]) == 0
    out = capsys.readouterr().out
    assert "contract 01_qlora_finetune" in out and parameters_cell(CONTRACTS["01_qlora_finetune"]) in out
    plain = tmp_path / "plain.ipynb"
    plain.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert main(["run", str(plain), "--help-notebook"]) == 0
    assert "takes no parameters" in capsys.readouterr().out


def test_run_folders_go_where_loralab_run_puts_them_with_no_sniffing_in_the_notebooks(tmp_path, monkeypatch):
    """run_dir "" (plain papermill, Colab): the package picks the folder (loralab.runs.shipped.working_folder)."""
    from loralab.runs.folder import new_run_dir

    monkeypatch.chdir(tmp_path)  # outside a checkout: ./runs
    assert new_run_dir(RunConfig()).parent == tmp_path.resolve() / "runs"
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        assert "getcwd" not in notebook.read_text(), f"{notebook.name} sniffs the working folder"
