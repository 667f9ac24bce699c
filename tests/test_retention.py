"""Retention checks through lm-evaluation-harness: the local task, name and network checks, the verdict.

The fast tests use the harness's real TaskManager (loralab's local task next to the harness's own
~14,000) and the verdict arithmetic; the slow ones run the harness on the tiny random model, and
notebook 01 with a retention task, whose after-score ``loralab eval --harness`` must reproduce exactly.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from conftest import TINY_MODEL
from loralab.eval.retention import (
    LOCAL_TASK,
    RetentionResult,
    TaskScore,
    check_retention_tasks,
    compare_retention,
    hub_datasets,
    manager_for,
    retention_metrics,
    task_manager,
)
from loralab.params.errors import ParamsError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_qlora_finetune.ipynb"
QUESTIONS = REPO / "src" / "loralab" / "eval" / "harness_tasks" / LOCAL_TASK / "questions.jsonl"


def test_the_local_task_is_a_harness_task_with_its_64_questions():
    loaded = task_manager().load([LOCAL_TASK])["tasks"]
    task = loaded[LOCAL_TASK] if isinstance(loaded, dict) else loaded[0]
    docs = list(task.test_docs())
    assert len(docs) == 64 == len(QUESTIONS.read_text().splitlines())
    for doc in docs:
        choices = task.doc_to_choice(doc)
        assert len(choices) == 4 and len(set(choices)) == 4
        assert 0 <= task.doc_to_target(doc) < 4
        assert task.doc_to_text(doc).startswith("Question: ") and task.doc_to_text(doc).endswith("Answer:")
    # the right answer is not always in the same place (a model could score by position alone)
    assert len({doc["answer"] for doc in docs}) == 4


def test_the_local_task_alone_needs_no_index_of_the_harness_tasks():
    """retention_tasks of loralab's own tasks only: the local folder is indexed (milliseconds, not 5-17 s)."""
    local = manager_for([LOCAL_TASK])
    assert local is task_manager(local_only=True) and local.all_tasks == [LOCAL_TASK]
    full = manager_for([LOCAL_TASK, "arc_easy"])
    assert full is task_manager() and "arc_easy" in full.task_index and LOCAL_TASK in full.task_index


def test_hub_data_of_tasks_groups_and_tags():
    assert hub_datasets(LOCAL_TASK) == []
    assert hub_datasets("arc_easy") == ["allenai/ai2_arc"]
    assert hub_datasets("ai2_arc") == ["allenai/ai2_arc"]  # a tag: arc_easy and arc_challenge
    assert hub_datasets("mmlu") == ["cais/mmlu"]  # a group of groups of tags of 57 tasks


def test_unknown_task_names_are_refused_with_the_nearest_ones():
    with pytest.raises(ParamsError, match="did you mean arc_easy") as error:
        check_retention_tasks(["arc_eazy"])
    assert LOCAL_TASK in str(error.value)
    with pytest.raises(ParamsError, match="'no such benchmark' is not an lm-evaluation-harness task"):
        check_retention_tasks([LOCAL_TASK, "no such benchmark"])


def test_a_hub_task_without_the_hub_is_refused_with_the_local_alternative():
    with pytest.raises(ParamsError, match="allenai/ai2_arc from the Hugging Face Hub") as error:
        check_retention_tasks(["arc_easy"], reachable=False)
    assert f"use the local task {LOCAL_TASK}" in str(error.value)
    check_retention_tasks(["arc_easy", LOCAL_TASK], reachable=True)  # Colab, Kaggle: fine
    check_retention_tasks([LOCAL_TASK], reachable=False)  # never needs the hub


def _result(label: str, acc: float, stderr: float, n: int = 64) -> RetentionResult:
    return RetentionResult(label, {"t": TaskScore("t", {"acc": acc, "acc_norm": acc}, {"acc": stderr}, n)}, limit=n)


@pytest.mark.parametrize("after, outcome, verdict", [
    (0.60, "kept", "adapter kept general ability: kept t (acc 0.625 -> 0.600, within its standard error 0.085)"),
    (0.45, "lost", "adapter lost 17.5 points on t (acc 0.625 -> 0.450, more than its standard error 0.085)"),
    (0.75, "gained", ("adapter kept general ability: gained 12.5 points on t (acc 0.625 -> 0.750, more than its "
                      "standard error 0.085)")),
])
def test_the_verdict_weighs_the_change_against_its_standard_error(after, outcome, verdict):
    report = compare_retention(_result("before", 0.625, 0.06), _result("after", after, 0.06))
    row = report.rows[0]
    assert row.stderr == pytest.approx(math.hypot(0.06, 0.06))
    assert row.outcome == outcome
    assert report.verdict == verdict
    assert list(report.table().columns) == ["task", "metric", "before", "after", "change", "stderr of change", "n",
                                            "outcome"]
    recorded = retention_metrics(_result("before", 0.625, 0.06), _result("after", after, 0.06))
    assert recorded["retention_verdict"] == verdict
    assert recorded["retention"][0]["outcome"] == outcome
    assert json.loads(json.dumps(recorded)) == recorded  # metrics.json can hold it


def test_no_retention_tasks_means_no_report():
    assert compare_retention(None, None) is None
    assert retention_metrics(None, None) == {}


def test_params_take_a_list_or_the_harness_comma_form_and_refuse_a_limit_below_one():
    from loralab.params.run_config import validate_params

    assert validate_params({"retention_tasks": "arc_easy, hellaswag"}).retention_tasks == ["arc_easy", "hellaswag"]
    assert validate_params({"retention_tasks": [LOCAL_TASK]}).retention_limit is None
    with pytest.raises(ParamsError, match="retention_limit"):
        validate_params({"retention_limit": 0})
    with pytest.raises(ParamsError, match="retention_tasks"):
        validate_params({"retention_tasks": ["", "arc_easy"]})


@pytest.mark.slow
def test_the_harness_leaves_the_run_as_it_found_it():
    """The harness seeds random/numpy/torch and switches the model to eval mode: a training run must not notice."""
    import numpy as np
    import torch

    from loralab.eval.retention import evaluate_tasks
    from loralab.model import attach_lora, load_model
    from loralab.params.run_config import RunConfig

    cfg = RunConfig(model_name=TINY_MODEL, load_in_4bit=False)
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    model.train()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    states = random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone()
    with_adapter = evaluate_tasks(model, tokenizer, [LOCAL_TASK], 8, "x")
    base_only = evaluate_tasks(model, tokenizer, [LOCAL_TASK], 8, "y", base_only=True)
    assert model.training
    assert random.getstate() == states[0]
    assert (np.random.get_state()[1] == states[1]).all()
    assert torch.equal(torch.get_rng_state(), states[2])
    assert with_adapter.tasks[LOCAL_TASK].samples == 8
    # a fresh LoRA adapter (B = 0) is the base: the same scores with it switched off
    assert with_adapter.tasks[LOCAL_TASK].metrics == base_only.tasks[LOCAL_TASK].metrics


@pytest.fixture(scope="module")
def retention_run(retention_mlflow_run) -> Path:
    """Notebook 01 with the local harness task (and MLflow: conftest, shared with tests/test_tracking.py)."""
    return retention_mlflow_run


@pytest.mark.slow
def test_notebook_01_records_retention_and_loralab_eval_reproduces_it(retention_run, tmp_path, capsys):
    from loralab.eval.cli import main

    metrics = json.loads((retention_run / "metrics.json").read_text())
    before, after = metrics["retention_before"], metrics["retention_after"]
    assert before["limit"] == after["limit"] == 32
    for result in (before, after):
        score = result["tasks"][LOCAL_TASK]
        assert score["samples"] == 32
        assert 0 < score["stderrs"]["acc"] < 0.2 and 0 <= score["metrics"]["acc"] <= 1
    row = metrics["retention"][0]
    assert row["task"] == LOCAL_TASK and row["metric"] == "acc"
    assert row["change"] == pytest.approx(row["after"] - row["before"])
    assert metrics["retention_verdict"].startswith("adapter ")
    manifest = json.loads((retention_run / "adapter" / "loralab_manifest.json").read_text())
    assert LOCAL_TASK in json.dumps(manifest)

    out = tmp_path / "eval"
    code = main([str(retention_run / "adapter"), "--base", "--harness", "--harness-only", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((out / "eval.json").read_text())
    base, adapter = report["models"]
    # the same model on the same questions in the same batches: exactly the run's numbers
    assert adapter["retention"]["tasks"] == after["tasks"]
    assert base["retention"]["tasks"] == before["tasks"]
    assert report["retention_vs_base"][adapter["label"]] == metrics["retention_verdict"]
    assert metrics["retention_verdict"] in printed


@pytest.mark.parametrize("name", ["colab_t4.yaml", "a100_lora16.yaml"])
def test_the_gpu_params_files_name_standard_harness_tasks(name):
    from loralab.params.run_config import load_params

    cfg = load_params(REPO / "params" / "01_qlora_finetune" / name)
    assert cfg.retention_tasks and LOCAL_TASK not in cfg.retention_tasks and cfg.retention_limit
    check_retention_tasks(cfg.retention_tasks, reachable=True)  # every name is the harness's own
    assert all(hub_datasets(task) for task in cfg.retention_tasks)  # standard tasks: hub data, run on a GPU machine


def test_a_sweep_gets_a_column_per_retention_task():
    from loralab.sweeps.sweep import score_columns

    recorded = retention_metrics(_result("before", 0.625, 0.06), _result("after", 0.5, 0.06))
    columns = score_columns({"eval_scores_after": {"contains": 0.25}, **recorded})
    assert columns == {"contains after": 0.25, "t acc after": 0.5}
