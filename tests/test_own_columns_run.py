"""Your data as it is, end to end: notebook 01 trained through ``loralab run`` on a CSV with its own columns,
scored on a Parquet file, then ``loralab eval`` on the same held-out rows as a CSV file.

The rows are the embedded short answers (``Answer: <answer>``) written as a spreadsheet would hold them:
columns ``question`` and ``reply``, mapped with ``prompt_template``, ``answer_column`` and ``system_prompt``.
One run on the tiny random model (16-bit base, a few steps) is shared by every test here: the mechanics of
reading, mapping and scoring, not learning (tests/test_notebook_01.py claims that on the embedded model).
Every refusal of a bad file or map is tested without a model in tests/test_column_map.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import TINY_MODEL
from loralab.data.short_answers import short_answer_rows

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_qlora_finetune.ipynb"
SCORERS = ["regex:^Answer: \\S", "contains", "chrf"]
TEMPLATE = "Question: {question}"
SYSTEM = "Reply in one line."

pytestmark = pytest.mark.slow


def _frame(rows: list[dict]) -> pd.DataFrame:
    """Chat rows as a table with the user's own column names."""
    return pd.DataFrame({"question": [r["messages"][0]["content"] for r in rows],
                         "reply": [r["messages"][-1]["content"] for r in rows]})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """One ``loralab run`` of notebook 01: train.csv for training, held.parquet held out; its run folder and
    metrics, and the held-out rows also written as held.csv."""
    from loralab.cli import main

    folder = tmp_path_factory.mktemp("own-columns")
    _frame(short_answer_rows("train")[:64]).to_csv(folder / "train.csv", index=False)
    held = _frame(short_answer_rows("eval")[:6])
    held.to_parquet(folder / "held.parquet")
    held.to_csv(folder / "held.csv", index=False)
    params = folder / "params.yaml"
    params.write_text(
        f"model_name: {TINY_MODEL}\nload_in_4bit: false\nmax_seq_length: 96\nlora_r: 8\nlora_alpha: 16\n"
        "max_steps: 4\nper_device_train_batch_size: 4\nlearning_rate: 1.0e-3\nwarmup_steps: 0\n"
        "eval_examples: 6\nmax_new_tokens: 12\nshow_examples: 1\nsave_steps: 0\n"
        f"dataset: {folder / 'train.csv'}\neval_dataset: {folder / 'held.parquet'}\n"
        f"eval_scorers: {json.dumps(SCORERS)}\n")
    code = main(["run", str(NOTEBOOK), "-f", str(params), "-p", "prompt_template", TEMPLATE,
                 "-p", "answer_column", "reply", "-p", "system_prompt", SYSTEM, "--runs-root", str(folder / "runs")])
    assert code == 0
    run_dir = next((folder / "runs").iterdir())
    return {"dir": run_dir, "metrics": json.loads((run_dir / "metrics.json").read_text()), "folder": folder}


def test_a_csv_trains_and_a_parquet_file_is_scored_then_loralab_eval_scores_the_csv_the_same(run, capsys):
    metrics, folder = run["metrics"], run["folder"]
    assert metrics["eval_source"] == str(folder / "held.parquet")
    assert set(metrics["eval_scores_before"]) == set(metrics["eval_scores_after"]) == set(SCORERS)
    assert all(0.0 <= v <= 1.0 for v in metrics["eval_scores_after"].values())
    examples = [json.loads(line) for line in (run["dir"] / "eval_examples.jsonl").read_text().splitlines()]
    assert len(examples) == 6 and all(e["reference"].startswith("Answer: ") for e in examples)
    assert examples[0]["prompt"] == "Question: " + short_answer_rows("eval")[0]["messages"][0]["content"]
    params = json.loads((run["dir"] / "adapter" / "loralab_manifest.json").read_text())["training"]
    assert (params["prompt_template"], params["answer_column"], params["system_prompt"]) == (TEMPLATE, "reply", SYSTEM)
    # loralab eval takes the map from the adapter's manifest: the same rows as a CSV file score the same
    from loralab.cli import main

    out = folder / "eval"
    assert main(["eval", str(run["dir"] / "adapter"), "-p", "eval_dataset", str(folder / "held.csv"),
                 "--out", str(out), "--json"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["eval_source"] == str(folder / "held.csv") and report["scorers"] == SCORERS
    assert report["models"][0]["scores"] == metrics["eval_scores_after"]
    assert report["eval_dataset_sha256"] == metrics["eval_dataset_sha256"]
    capsys.readouterr()
