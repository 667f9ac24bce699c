"""Evaluation on a user's own data: notebook 01 on a dataset the test writes, then `loralab eval` on its adapter.

The dataset is not the JSON task: the embedded questions answered in one line, ``Answer: <answer>``,
written to JSON Lines files here, with one held-out row copied into the training file (it must be
found and removed). One run of notebook 01 on the tiny random model (16-bit base, a few seconds of
training) is shared by every test in this file: it checks the mechanics of evaluating on your own data;
that scorers rise with training is claimed on the embedded model by tests/test_notebook_01.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_MODEL
from loralab.data.short_answers import short_answer_rows

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_qlora_finetune.ipynb"
SCORERS = ["regex:^Answer: \\S", "contains", "chrf"]
EVAL_STEPS = 4
MAX_STEPS = 12

pytestmark = pytest.mark.slow


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def own_data(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("own-data")
    train, held_out = short_answer_rows("train"), short_answer_rows("eval")[:24]
    leaked = held_out[5]
    return {"train": _write(folder / "train.jsonl", train[:100] + [leaked] + train[100:]),
            "eval": _write(folder / "eval.jsonl", held_out), "leaked": leaked, "folder": folder}


@pytest.fixture(scope="module")
def params(own_data) -> dict:
    return {"model_name": TINY_MODEL, "dataset": own_data["train"], "eval_dataset": own_data["eval"], "eval_scorers": SCORERS,
            "eval_examples": 8, "eval_steps": EVAL_STEPS, "load_in_4bit": False, "max_seq_length": 96,
            "lora_r": 8, "lora_alpha": 16, "max_steps": MAX_STEPS, "per_device_train_batch_size": 4,
            "learning_rate": 1e-3, "warmup_steps": 0, "max_new_tokens": 16, "show_examples": 2, "save_steps": 0,
            "use_gradient_checkpointing": False}


@pytest.fixture(scope="module")
def run(own_data, params) -> Path:
    from loralab.runs.runner import run_notebook

    return run_notebook(NOTEBOOK, params, runs_root=own_data["folder"] / "runs", run_name="own-data", timeout_s=900)


@pytest.fixture(scope="module")
def metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_held_out_loss_falls_and_is_recorded_before_and_after(metrics):
    assert metrics["eval_loss_after"] < metrics["eval_loss_before"]
    assert metrics["eval_perplexity_after"] < metrics["eval_perplexity_before"]
    assert metrics["eval_source"].endswith("eval.jsonl")


def test_eval_steps_give_an_eval_loss_curve(metrics, run):
    steps = [point["step"] for point in metrics["eval_losses"]]
    assert steps == list(range(EVAL_STEPS, MAX_STEPS + 1, EVAL_STEPS))
    assert all(point["eval_loss"] > 0 for point in metrics["eval_losses"])
    assert metrics["eval_losses"][-1]["eval_loss"] == pytest.approx(metrics["eval_loss_after"], rel=1e-4)
    assert (run / "loss.png").stat().st_size > 5000


def test_every_scorer_scores_before_and_after(metrics):
    """That the scores rise with training is claimed on the embedded model (tests/test_notebook_01.py)."""
    before, after = metrics["eval_scores_before"], metrics["eval_scores_after"]
    assert set(before) == set(after) == set(SCORERS)
    assert all(0.0 <= value <= 1.0 for value in [*before.values(), *after.values()]), (before, after)
    assert after["chrf"] > 0, "chrF scores character overlap: even a random model's reply has some"
    assert metrics["eval_score_after"] == after[SCORERS[0]]
    assert metrics["eval_scorer_failures"] == {name: 0 for name in SCORERS}


def test_the_leaked_row_was_removed_and_both_splits_are_fingerprinted(metrics, run):
    assert metrics["eval_rows_leaked"] == 1 and metrics["eval_rows"] == 23
    manifest = json.loads((run / "adapter" / "loralab_manifest.json").read_text())
    assert manifest["eval_dataset"]["rows"] == 23 and len(manifest["eval_dataset"]["sha256"]) == 64
    assert manifest["dataset"]["sha256"] == metrics["dataset_sha256"]
    assert manifest["eval_dataset"]["sha256"] == metrics["eval_dataset_sha256"]


def test_side_by_side_answers_are_saved(run, metrics, own_data):
    lines = [json.loads(line) for line in (run / "eval_examples.jsonl").read_text().splitlines()]
    assert len(lines) == metrics["eval_examples"] == 8
    leaked_prompt = own_data["leaked"]["messages"][0]["content"]
    assert all(line["prompt"] != leaked_prompt for line in lines)
    for line in lines:
        assert line["reference"].startswith("Answer: ") and isinstance(line["before"], str)
        assert set(line["scores_after"]) == set(SCORERS)


def test_loralab_eval_reproduces_the_runs_scores_on_the_adapter_and_the_base(run, metrics, tmp_path, capsys):
    from loralab.eval.cli import main

    out = tmp_path / "eval"
    assert main([str(run / "adapter"), "--base", "--out", str(out), "--json"]) == 0
    report = json.loads((out / "eval.json").read_text())
    by_label = {m["label"]: m for m in report["models"]}
    assert set(by_label) == {"base", "own-data"}
    # same greedy decoding on the same rows: exactly the notebook's after- and before-scores
    assert by_label["own-data"]["scores"] == metrics["eval_scores_after"]
    assert by_label["base"]["scores"] == metrics["eval_scores_before"]
    assert by_label["own-data"]["eval_loss"] == pytest.approx(metrics["eval_loss_after"], rel=1e-4)
    assert by_label["base"]["eval_loss"] == pytest.approx(metrics["eval_loss_before"], rel=1e-4)
    assert report["eval_dataset_sha256"] == metrics["eval_dataset_sha256"]
    examples = [json.loads(x) for x in (out / "eval_examples.jsonl").read_text().splitlines()]
    notebook_examples = [json.loads(x) for x in (run / "eval_examples.jsonl").read_text().splitlines()]
    assert [e["own-data"] for e in examples] == [e["after"] for e in notebook_examples]
    assert json.loads(capsys.readouterr().out)["models"][1]["label"] == "own-data"
    # the table a person sees without --json: one row per model, a column per scorer
    from rich.console import Console

    from loralab.eval.cli import results_table

    console = Console(width=200, record=True)
    console.print(results_table(report))
    text = console.export_text()
    assert "own-data" in text and "base" in text and "held-out loss" in text and "chrf" in text
    assert f"{by_label['own-data']['scores']['contains']:.3f}" in text


def test_loralab_eval_refuses_bad_input_in_one_line(run, tmp_path, capsys):
    from loralab.cli import main

    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().out
    assert main(["eval", str(run / "adapter"), "-p", "eval_scorers", "[rougel]", "--out", str(tmp_path / "e")]) == 2
    out = capsys.readouterr().out
    assert "Did you mean 'rouge_l'" in out and "Traceback" not in out
    assert not (tmp_path / "e").exists(), "nothing is written for a refused command"
