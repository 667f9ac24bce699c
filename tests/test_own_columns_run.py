"""Your data as it is, end to end: notebook 01 trained through ``loralab run`` on a CSV and on a Parquet file
with their own columns, each scored on held-out rows of the other kind, then ``loralab eval`` on a CSV.

The rows are the embedded short answers (``Answer: <answer>``) written as a spreadsheet would hold them:
columns ``question``/``reply`` in one pair of files and ``prompt_text``/``gold`` in the other, mapped with
``prompt_template``, ``answer_column`` and ``system_prompt``. Two short runs on the tiny random model
(16-bit base, 3 steps) in one fixture: the mechanics of reading, mapping and scoring, not learning
(tests/test_notebook_01.py claims that on the embedded model).
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


def _frame(rows: list[dict], question: str, answer: str) -> pd.DataFrame:
    """Chat rows as a table with the user's own column names."""
    return pd.DataFrame({question: [r["messages"][0]["content"] for r in rows],
                         answer: [r["messages"][-1]["content"] for r in rows]})


def _loralab_run(folder: Path, name: str, train: str, held_out: str, template: str, answer: str) -> dict:
    """One ``loralab run`` of notebook 01 on ``train`` with ``held_out`` held out: its folder and metrics."""
    from loralab.cli import main

    params = folder / f"{name}.yaml"
    params.write_text(
        f"model_name: {TINY_MODEL}\nload_in_4bit: false\nmax_seq_length: 96\nlora_r: 8\nlora_alpha: 16\n"
        "max_steps: 3\nper_device_train_batch_size: 4\nlearning_rate: 1.0e-3\nwarmup_steps: 0\n"
        "eval_examples: 6\nmax_new_tokens: 12\nshow_examples: 1\nsave_steps: 0\n"
        f"dataset: {folder / train}\neval_dataset: {folder / held_out}\neval_scorers: {json.dumps(SCORERS)}\n")
    code = main(["run", str(NOTEBOOK), "-f", str(params), "-p", "prompt_template", template, "-p", "answer_column",
                 answer, "-p", "system_prompt", SYSTEM, "--runs-root", str(folder / name)])
    assert code == 0
    run_dir = next((folder / name).iterdir())
    return {"dir": run_dir, "metrics": json.loads((run_dir / "metrics.json").read_text())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Two runs: train.csv (question, reply) scored on held.parquet, and train.parquet (prompt_text, gold)
    scored on held_gold.csv; the first run's held-out rows are also written as held.csv for loralab eval."""
    folder = tmp_path_factory.mktemp("own-columns")
    train, held = short_answer_rows("train")[:48], short_answer_rows("eval")[:6]
    _frame(train, "question", "reply").to_csv(folder / "train.csv", index=False)
    _frame(held, "question", "reply").to_parquet(folder / "held.parquet")
    _frame(held, "question", "reply").to_csv(folder / "held.csv", index=False)
    _frame(train, "prompt_text", "gold").to_parquet(folder / "train.parquet")
    _frame(held, "prompt_text", "gold").to_csv(folder / "held_gold.csv", index=False)
    return {"folder": folder,
            "csv": _loralab_run(folder, "csv", "train.csv", "held.parquet", TEMPLATE, "reply"),
            "parquet": _loralab_run(folder, "parquet", "train.parquet", "held_gold.csv", "{prompt_text}", "gold")}


def test_a_csv_and_a_parquet_file_train_and_are_scored_and_loralab_eval_scores_a_csv_the_same(runs, capsys):
    folder = runs["folder"]
    first_question = short_answer_rows("eval")[0]["messages"][0]["content"]
    for kind, held_out, prompt in (("csv", "held.parquet", "Question: " + first_question),
                                   ("parquet", "held_gold.csv", first_question)):
        run_dir, metrics = runs[kind]["dir"], runs[kind]["metrics"]
        assert metrics["eval_source"] == str(folder / held_out), kind
        assert set(metrics["eval_scores_before"]) == set(metrics["eval_scores_after"]) == set(SCORERS), kind
        assert all(0.0 <= v <= 1.0 for v in metrics["eval_scores_after"].values()), kind
        assert metrics["eval_loss_after"] > 0, kind
        examples = [json.loads(line) for line in (run_dir / "eval_examples.jsonl").read_text().splitlines()]
        assert len(examples) == 6 and all(e["reference"].startswith("Answer: ") for e in examples), kind
        assert examples[0]["prompt"] == prompt, kind
    manifest = json.loads((runs["csv"]["dir"] / "adapter" / "loralab_manifest.json").read_text())["training"]
    assert (manifest["prompt_template"], manifest["answer_column"], manifest["system_prompt"]) == \
        (TEMPLATE, "reply", SYSTEM)
    # loralab eval takes the map from the adapter's manifest: the same rows as a CSV score as the Parquet did
    from loralab.cli import main

    out = folder / "eval"
    assert main(["eval", str(runs["csv"]["dir"] / "adapter"), "-p", "eval_dataset", str(folder / "held.csv"),
                 "--out", str(out), "--json"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["eval_source"] == str(folder / "held.csv") and report["scorers"] == SCORERS
    assert report["models"][0]["scores"] == runs["csv"]["metrics"]["eval_scores_after"]
    assert report["eval_dataset_sha256"] == runs["csv"]["metrics"]["eval_dataset_sha256"]
    capsys.readouterr()
