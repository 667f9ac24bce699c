"""One folder per run: metrics.json, the adapter, the loss plot and the executed notebook.

    from loralab.runs.folder import new_run_dir, write_metrics, plot_loss
    run_dir = new_run_dir(cfg)                          # runs/20261129-051200-smollm2-135m-instruct
    plot_loss(trainer.state.log_history, run_dir / "loss.png")
    write_metrics(run_dir, {...})

Tests and sweeps read ``metrics.json``, never notebook outputs. docs/run-folder.md lists its keys.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

from loralab.atomic_file import write_text_aside
from loralab.params.run_config import RunConfig


def new_run_dir(cfg: RunConfig, root: str | Path | None = None) -> Path:
    """``cfg.run_dir`` when set, else a new ``root/<time>-<model>`` folder; created either way.

    ``root`` defaults to where ``loralab run`` puts run folders: the repository's ``runs/`` inside a
    checkout (wherever in it the notebook runs), else ``./runs`` (Colab's /content/runs).
    """
    if root is None:
        from loralab.runs.shipped import working_folder

        root = working_folder("runs")
    if cfg.run_dir:
        path = Path(cfg.run_dir)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{stamp}-{cfg.model_name.rstrip('/').rsplit('/', 1)[-1]}"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def peak_memory_gb() -> dict[str, float | str]:
    """Peak memory of this process: max allocated on a CUDA GPU, peak RSS on a CPU (GB)."""
    import torch

    if torch.cuda.is_available():
        return {"device": torch.cuda.get_device_name(), "peak_memory_gb": torch.cuda.max_memory_allocated() / 1e9,
                "peak_memory_kind": "cuda_max_allocated"}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return {"device": f"cpu ({os.cpu_count()} cores)", "peak_memory_gb": rss_kb / 1e6, "peak_memory_kind": "cpu_rss"}


def train_summary(log_history: list[dict], train_metrics: dict) -> dict:
    """Loss first/last, token count and tokens/s from the trainer's log."""
    losses = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    tokens = max((h.get("num_tokens", 0) for h in log_history), default=0)
    runtime = float(train_metrics.get("train_runtime", 0.0))
    return {
        "train_loss_first": losses[0][1] if losses else None,
        "train_loss_last": losses[-1][1] if losses else None,
        "train_losses": [loss for _, loss in losses],
        "train_tokens": int(tokens),
        "train_runtime_s": runtime,
        "train_tokens_per_s": tokens / runtime if runtime else None,
    }


def plot_loss(log_history: list[dict], path: str | Path, eval_loss_before: float | None = None):
    """Training loss per step, and the held-out loss where it was measured, as a PNG; returns the figure.

    ``eval_loss_before`` (the held-out loss before training) is drawn at step 0. A held-out curve that
    turns up while the training loss keeps falling is overfitting.
    """
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "ipykernel" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in log_history if "loss" in h]
    losses = [h["loss"] for h in log_history if "loss" in h]
    held_out = ([(0, eval_loss_before)] if eval_loss_before is not None else []) + [
        (h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and h["step"] > 0]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, marker="o", markersize=3, label="training loss")
    if held_out:
        ax.plot([s for s, _ in held_out], [v for _, v in held_out], marker="s", markersize=4, label="held-out loss")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title("LoRA training and held-out loss" if held_out else "LoRA training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_preference(log_history: list[dict], path: str | Path):
    """The preference trainer's logged rewards (chosen, rejected, margin) and loss per step, as a PNG."""
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "ipykernel" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins"):
        points = [(h["step"], h[key]) for h in log_history if key in h and "eval_loss" not in h]
        if points:
            left.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, label=key)
    left.set_title("implicit rewards (training batches)")
    left.set_xlabel("step")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    points = [(h["step"], h["loss"]) for h in log_history if "loss" in h]
    right.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3)
    right.set_title("preference loss")
    right.set_xlabel("step")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def plot_rewards(log_history: list[dict], path: str | Path):
    """GRPO's signal per step, as a PNG: each reward's mean (its std as a band) and the summed reward; the
    share of groups with no reward spread and the completion length; the loss (near 0 by design) and KL."""
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "ipykernel" not in __import__("sys").modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h for h in log_history if "reward" in h]
    xs = [h["step"] for h in steps]
    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(14, 3.5))
    names = sorted({k[len("rewards/"):-len("/mean")] for h in steps for k in h
                    if k.startswith("rewards/") and k.endswith("/mean")})
    for name in names:
        mean = [h.get(f"rewards/{name}/mean", float("nan")) for h in steps]
        std = [h.get(f"rewards/{name}/std", 0.0) for h in steps]
        left.plot(xs, mean, marker="o", markersize=3, label=name[:40])
        left.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.12)
    left.plot(xs, [h["reward"] for h in steps], color="black", linewidth=2, label="reward (weighted sum)")
    left.set_title("rewards of the sampled completions")
    left.legend(fontsize=7)
    middle.plot(xs, [h.get("frac_reward_zero_std", float("nan")) for h in steps], marker="o", markersize=3,
                label="groups without reward spread")
    middle.set_ylim(-0.05, 1.05)
    middle.set_title("share of groups that teach nothing")
    lengths = middle.twinx()
    lengths.plot(xs, [h.get("completions/mean_length", float("nan")) for h in steps], color="tab:orange",
                 marker="s", markersize=3, label="mean completion length")
    lengths.set_ylabel("tokens", color="tab:orange")
    right.plot(xs, [h.get("loss", float("nan")) for h in steps], marker="o", markersize=3, label="loss")
    if any("kl" in h for h in steps):
        right.plot(xs, [h.get("kl", float("nan")) for h in steps], marker="s", markersize=3, label="KL to reference")
    right.set_title("loss (near 0 by design) and KL")
    right.legend(fontsize=7)
    for axis in (left, middle, right):
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


def write_metrics(run_dir: str | Path, metrics: dict) -> Path:
    """Write ``metrics.json`` (written aside, then renamed, so a reader never sees half a file)."""
    return write_text_aside(Path(run_dir) / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True, default=str))
