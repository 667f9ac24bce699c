"""Experiment tracking, opt-in: the trainer's own ``report_to`` integrations, kept in the run folder.

    from loralab.train.tracking import point_tracker_at, log_run_summary
    trainer = build_trainer(...)                      # report_to reaches TrainingArguments
    point_tracker_at(trainer, run_dir)                # TensorBoard events / MLflow store inside run_dir
    trainer.train()
    log_run_summary(trainer, cfg, metrics)            # params, eval scores, adapter path: config + summary

``report_to`` is one of ``none``, ``tensorboard``, ``mlflow``, ``wandb``, ``trackio``; the logging
itself (loss, learning rate, grad norm, eval loss at each logging step) is transformers' own callback
for that tracker. Where the data goes, unless the tracker's own environment variable says otherwise:

* ``tensorboard``: event files in ``run_dir/tensorboard`` (``TENSORBOARD_LOGGING_DIR`` wins);
  ``tensorboard --logdir runs`` compares every run.
* ``mlflow``: a local SQLite store ``run_dir/mlflow.db`` (``MLFLOW_TRACKING_URI`` wins: a server, or one
  shared store for several runs); ``mlflow ui --backend-store-uri sqlite:///runs/<run>/mlflow.db``.
* ``wandb``: offline files under ``run_dir/wandb`` when no API key is configured (``WANDB_MODE``,
  ``WANDB_DIR`` win); ``wandb sync`` uploads them later.
* ``trackio``: trackio's own local store (``TRACKIO_DIR``).

After training, ``log_run_summary`` adds what the trainer does not know: loralab's params (the
tracker's config), the eval scores before and after and the held-out losses (its summary), and the
adapter folder (TensorBoard, MLflow and W&B; trackio gets the trainer's curves only). A tracker whose
package is missing is refused before any model loads (``loralab.params.runtime_check``). TensorBoard
and MLflow are tested here (``tests/test_tracking.py``); wandb and trackio are not installed here.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

TENSORBOARD_FOLDER = "tensorboard"
MLFLOW_STORE = "mlflow.db"
SUMMARY_PREFIX = "loralab"


def _callbacks(trainer, class_name: str) -> list:
    return [cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == class_name]


def point_tracker_at(trainer, run_dir: str | Path) -> dict[str, str]:
    """Send the trainer's tracker into ``run_dir`` (unless its own environment variable chose a place).

    Returns where it writes (``{"tensorboard": ".../tensorboard"}``), recorded in metrics.json.
    """
    run_dir = Path(run_dir).resolve()
    places: dict[str, str] = {}
    for callback in _callbacks(trainer, "TensorBoardCallback"):
        if not os.environ.get("TENSORBOARD_LOGGING_DIR"):
            callback.logging_dir = str(run_dir / TENSORBOARD_FOLDER)
        places["tensorboard"] = callback.logging_dir or ""
    if _callbacks(trainer, "MLflowCallback"):
        import mlflow

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{run_dir / MLFLOW_STORE}"
        mlflow.set_tracking_uri(uri)
        if os.environ.get("MLFLOW_EXPERIMENT_NAME"):
            mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
        if mlflow.active_run() is None:
            # One MLflow run for the whole notebook: the callback then logs the evaluations before and
            # after training into it too (on its own it ends its run with training), and
            # log_run_summary ends it.
            mlflow.start_run(run_name=run_dir.name)
        places["mlflow"] = uri
    if _callbacks(trainer, "WandbCallback"):
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        if not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
            os.environ["WANDB_MODE"] = "offline"  # no account configured: keep the files, sync later
        places["wandb"] = os.environ["WANDB_DIR"]
    if _callbacks(trainer, "TrackioCallback"):
        places["trackio"] = os.environ.get("TRACKIO_DIR", "trackio's default folder")
    return places


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    """{"loralab.lora_r": 16, "loralab.eval_scorers": "[...]"}: nested values as JSON text."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flat(f"{prefix}.{key}", inner))
        return out
    if isinstance(value, (list, tuple)):
        return {prefix: json.dumps(value, default=str)}
    return {prefix: value}


def summary_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The numbers a run is judged by: held-out losses, every eval score before/after, retention."""
    numbers: dict[str, float] = {}
    for key in ("eval_loss_before", "eval_loss_after", "eval_perplexity_before", "eval_perplexity_after",
                "train_loss_first", "train_loss_last", "preference_accuracy_before", "preference_accuracy_after",
                "preference_margin_before", "preference_margin_after", "peak_memory_gb", "wall_time_s"):
        if isinstance(metrics.get(key), (int, float)):
            numbers[key] = float(metrics[key])
    for when in ("before", "after"):
        for name, value in (metrics.get(f"eval_scores_{when}") or {}).items():
            if isinstance(value, (int, float)):
                numbers[f"score_{when}/{name}"] = float(value)
    for row in metrics.get("retention") or []:
        numbers[f"retention_before/{row['task']}"] = float(row["before"])
        numbers[f"retention_after/{row['task']}"] = float(row["after"])
    return numbers


def log_run_summary(trainer, cfg, metrics: dict[str, Any]) -> None:
    """Give the tracker loralab's params (config), the run's scores (summary) and the adapter folder."""
    if cfg.report_to == "none":
        return
    params = _flat(SUMMARY_PREFIX, cfg.model_dump())
    numbers = summary_numbers(metrics)
    adapter_dir = str(metrics.get("adapter_dir", ""))
    step = int(trainer.state.global_step)
    if cfg.report_to == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        for callback in _callbacks(trainer, "TensorBoardCallback"):
            writer = SummaryWriter(log_dir=callback.logging_dir)
            writer.add_text(f"{SUMMARY_PREFIX}/params", json.dumps(cfg.model_dump(), indent=1, default=str), step)
            writer.add_text(f"{SUMMARY_PREFIX}/adapter_dir", adapter_dir, step)
            for name, value in numbers.items():
                writer.add_scalar(f"{SUMMARY_PREFIX}/{name}", value, step)
            writer.close()
    elif cfg.report_to == "mlflow":
        import mlflow

        active = mlflow.active_run()  # the notebook's run, started by point_tracker_at
        run = active or mlflow.last_active_run()
        with contextlib.nullcontext() if active else mlflow.start_run(run_id=run.info.run_id if run else None):
            mlflow.log_params({k: str(v)[:250] for k, v in params.items()})
            mlflow.log_metrics({name.replace("/", "."): value for name, value in numbers.items()}, step=step)
            mlflow.set_tag("adapter_dir", adapter_dir)
        if mlflow.active_run():
            mlflow.end_run()
    elif cfg.report_to == "wandb":
        import wandb

        if wandb.run is not None:
            wandb.run.config.update(params, allow_val_change=True)
            wandb.run.summary.update({**numbers, "adapter_dir": adapter_dir})
    # trackio: the trainer's own callback logs the training curves; no summary is added (not tested here).
