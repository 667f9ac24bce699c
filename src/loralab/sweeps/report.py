"""Tables and plots of one sweep folder (what notebook 02 shows).

    from loralab.sweeps.report import load_results, resolve_sweep_dir, summary_table, metric_plots
    results = load_results(resolve_sweep_dir("sweeps/rank"))          # sweep.json + every run's status and metrics.json
    display(summary_table(results))                # one row per run, indexed by the swept knobs
    for path in metric_plots(results, save_dir=results.sweep_dir):   # plot_quality.png, plot_cost.png
        display(Image(path))

Runs that failed or have not run stay in the table (state column) and drop out of the plots.
A run listed under two series (e.g. r=8, alpha=16 is both "alpha = 2r" and "alpha = 16") is
drawn in both.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from loralab.runs.shipped import checkout_root, working_folder
from loralab.sweeps.sweep import SCORE_COLUMN, SWEEP_FILE, SweepSpecError, collect_results

QUALITY = {"eval_loss_after": "held-out loss after", "preference_accuracy_after": "preference accuracy after",
           "preference_margin_after": "reward margin after", "train_loss_last": "final training loss"}
COST = {"trainable_params": "trainable parameters", "peak_memory_gb": "peak memory (GB)",
        "wall_time_s": "wall time per run (s)", "train_runtime_s": "training time (s)"}


@dataclass
class SweepResults:
    """One sweep's results: the question, the knobs, a row per run, and the x/hue the plots use."""

    sweep_dir: Path
    name: str
    question: str
    knobs: list[str]
    table: object  # pandas.DataFrame, one row per run
    long: object  # pandas.DataFrame, one row per (run, series)
    x: str
    hue: str | None


def find_latest_sweep(root: str | Path) -> Path:
    """The most recently written sweep folder under ``root`` (a folder holding sweep.json)."""
    candidates = sorted(Path(root).glob(f"*/{SWEEP_FILE}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise SweepSpecError(f"no sweep folder under {Path(root).resolve()}: run `loralab sweep SPEC.yaml` first "
                             "or set sweep_dir.")
    return candidates[-1].parent


def resolve_sweep_dir(sweep_dir: str | Path) -> Path:
    """'' -> the newest sweep under ./sweeps (the repo's sweeps/ inside a checkout); a relative path -> from
    the current folder, else from the checkout."""
    if not str(sweep_dir):
        return find_latest_sweep(working_folder("sweeps"))
    path = Path(sweep_dir).expanduser()
    root = checkout_root()
    if not path.is_absolute() and not path.exists() and root is not None and (root / path).exists():
        return (root / path).resolve()
    return path.resolve()


def load_results(sweep_dir: str | Path) -> SweepResults:
    """Read a sweep folder into tables; pick x (the first knob) and hue (series, else the second knob).

    When two runs would share one x and hue (a run list that varies several knobs together), x is the
    run itself, so no plot averages two different settings.
    """
    import pandas as pd

    sweep_dir = Path(sweep_dir).resolve()
    rows = collect_results(sweep_dir)
    sweep = json.loads((sweep_dir / SWEEP_FILE).read_text())
    knobs = list(sweep["knobs"])
    table = pd.DataFrame(rows)
    for knob in knobs:  # lists (target_modules) are not hashable: group on their text
        table[knob] = table[knob].map(lambda v: "+".join(map(str, v)) if isinstance(v, list) else v)
    has_series = bool(table["series"].astype(bool).any()) if len(table) else False
    long = table.assign(series=table["series"].str.split(" | ", regex=False)).explode("series") \
        if has_series else table.copy()
    x = knobs[0] if knobs else "run"
    hue = "series" if has_series else (knobs[1] if len(knobs) > 1 else None)
    if long.duplicated([c for c in (x, hue) if c]).any():  # runs that differ in other knobs: one bar per run
        x, hue = "setting", None
        labels = _setting_labels(table, knobs)
        for frame in (table, long):
            frame["setting"] = frame["run"].map(labels)
    return SweepResults(sweep_dir, sweep["name"], sweep["question"], knobs, table, long.reset_index(drop=True),
                        x, hue)


def quality_metrics(results: SweepResults) -> dict[str, str]:
    """Column -> label of every quality number the runs recorded: each scorer's after-score, then the losses."""
    scores = {c: c for c in results.table.columns if str(c).endswith(SCORE_COLUMN.format(""))}
    return scores | QUALITY


def _setting_labels(table, knobs: list[str]) -> dict[str, str]:
    """run -> a short label: its series, plus the knobs that tell it from the other runs of that series."""
    labels = {}
    for series, group in table.groupby("series", sort=False):
        varying = [k for k in knobs if group[k].astype(str).nunique() > 1]
        for _, row in group.iterrows():
            extra = "\n".join(f"{k}={row[k]}" for k in varying)
            labels[row["run"]] = "\n".join(part for part in (series, extra) if part) or row["run"]
    return labels


def summary_table(results: SweepResults):
    """One row per (series,) run, indexed by hue and x, with state, the other knobs and the metrics."""
    index = [c for c in (results.hue, results.x) if c]
    others = [k for k in results.knobs if k not in index]
    columns = others + ["state"] + [c for c in (*quality_metrics(results), *COST) if c in results.long.columns]
    table = results.long.set_index(index)[columns].sort_index()
    return table.dropna(axis=1, how="all")


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_metrics(results: SweepResults, metrics: dict[str, str], title: str, path: str | Path | None = None):
    """One panel per metric against x, one line (numeric x) or bar group (other x) per hue value."""
    import matplotlib

    if not os.environ.get("MPLBACKEND") and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = results.long[results.long["state"] == "ok"]
    present = {m: label for m, label in metrics.items() if m in ok.columns and ok[m].notna().any()}
    tall = results.x == "setting"  # long labels under the bars
    fig, axes = plt.subplots(1, max(1, len(present)), figsize=(3.6 * max(1, len(present)), 4.2 if tall else 3.2),
                             squeeze=False)
    xs = sorted(ok[results.x].dropna().unique().tolist(), key=str) if len(ok) else []
    numeric_x = _numeric(xs) and len(xs) >= 3
    for ax, (metric, label) in zip(axes[0], present.items()):
        pivot = ok.pivot_table(index=results.x, columns=results.hue, values=metric, aggfunc="mean") \
            if results.hue else ok.groupby(results.x)[metric].mean().to_frame(metric)
        pivot = pivot.astype(float)
        if numeric_x:
            for column in pivot.columns:
                series = pivot[column].dropna()
                ax.plot(series.index, series.values, marker="o", label=str(column))
            if min(xs) > 0 and max(xs) / min(xs) >= 8:
                ax.set_xscale("log", base=2)
                ax.set_xticks(xs, [str(v) for v in xs])
        else:
            pivot.index = [str(v) for v in pivot.index]
            pivot.plot(kind="bar", ax=ax, rot=30 if results.x == "setting" else 0, legend=False)
            if results.x == "setting":
                ax.set_xticklabels(ax.get_xticklabels(), ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel(results.x)
        ax.grid(alpha=0.3)
    if results.hue and len(present):
        axes[0][0].legend(title=results.hue, fontsize=8)
    fig.suptitle(f"{results.name}: {title}", fontsize=11)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def metric_plots(results: SweepResults, save_dir: str | Path | None = None) -> list[Path]:
    """Draw quality (scores, loss) and cost (parameters, memory, time) plots; save them as PNGs."""
    import matplotlib.pyplot as plt

    save_dir = Path(save_dir or results.sweep_dir)
    paths = []
    for stem, metrics, title in (("plot_quality", quality_metrics(results), "quality"), ("plot_cost", COST, "cost")):
        path = save_dir / f"{stem}.png"
        fig = plot_metrics(results, metrics, title, path)
        plt.close(fig)
        paths.append(path)
    return paths
