"""Headless progress and experiment tracking on real runs of notebook 01.

``loralab run`` with the default params and ``report_to: tensorboard``: its terminal gets the sections and one line per
step, the executed notebook none of it (and no standard error: a page shows it in red), and TensorBoard's own
reader finds the losses at the right steps and loralab's params and scores in ``run_dir/tensorboard``. The
retention test's run logs to MLflow in local mode (SQLite in the run folder), read back with MLflow's client.
Both runs are session fixtures in conftest.py, shared with the tests of notebook 01 and of retention.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loralab.params.yaml_reader import read_params_file

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_qlora_finetune.ipynb"
DEFAULT = REPO / "params" / "01_qlora_finetune" / "default.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tensorboard_run(default_cli_run) -> tuple[Path, str]:
    """``loralab run`` with the default params and report_to: tensorboard (conftest, shared with notebook 01's tests)."""
    return default_cli_run[0], default_cli_run[1]


def test_the_terminal_hears_sections_and_steps_and_the_notebook_does_not(tensorboard_run):
    run_dir, terminal = tensorboard_run
    steps = read_params_file(DEFAULT)["max_steps"]
    for section in ("[loralab] 2. Load the model", "[loralab] 5. The trainer", "[loralab] 6. Train",
                    "[loralab] 8. Save"):
        assert section in terminal
    for step in range(1, steps + 1):
        assert f"[loralab] step {step}/{steps} | loss " in terminal
    assert "tokens/s" in terminal and "ETA" in terminal and f"training done: step {steps}/{steps}" in terminal
    executed = (run_dir / NOTEBOOK.name).read_text()
    assert "[loralab]" not in executed, "progress lines belong to the terminal, not the executed notebook"
    red = [o for cell in json.loads(executed)["cells"] for o in cell.get("outputs", []) if o.get("name") == "stderr"]
    assert not red, f"standard error shows as a red block: {red[0]}"
    assert "application/vnd.jupyter.widget-view+json" not in executed


def test_tensorboard_reads_back_the_losses_params_and_scores(tensorboard_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = tensorboard_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["tracking"] == {"tensorboard": str(run_dir.resolve() / "tensorboard")}
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, metrics["params"]["max_steps"] + 1))
    assert [e.value for e in losses] == pytest.approx(metrics["train_losses"], rel=1e-6)
    after = events.Scalars("loralab/score_after/json_shape")
    assert after[-1].value == pytest.approx(metrics["eval_scores_after"]["json_shape"])
    assert events.Scalars("loralab/eval_loss_after")[-1].value == pytest.approx(metrics["eval_loss_after"], rel=1e-6)
    params_text = events.Tensors("loralab/params/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert json.loads(params_text)["lora_r"] == metrics["params"]["lora_r"]
    adapter_text = events.Tensors("loralab/adapter_dir/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert adapter_text == metrics["adapter_dir"]


def test_mlflow_local_mode_holds_the_run(retention_mlflow_run):
    from mlflow.tracking import MlflowClient

    run_dir = retention_mlflow_run  # notebook 01 with report_to: mlflow (conftest, shared with test_retention)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    uri = metrics["tracking"]["mlflow"]
    assert uri == f"sqlite:///{run_dir.resolve() / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, "the summary goes into the trainer's run, not a new one"
    run = runs[0]
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, metrics["params"]["max_steps"] + 1))
    assert [m.value for m in history] == pytest.approx(metrics["train_losses"], rel=1e-6)
    assert run.data.params["loralab.lora_r"] == str(metrics["params"]["lora_r"])
    assert run.data.metrics["score_after.json_shape"] == pytest.approx(metrics["eval_scores_after"]["json_shape"])
    assert run.data.tags["adapter_dir"] == metrics["adapter_dir"]
