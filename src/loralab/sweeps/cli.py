"""``loralab sweep``: run a sweep spec with a progress bar, per-run status lines and a results table.

    loralab sweep params/sweeps/rank.yaml                   # one run at a time into sweeps/rank/
    loralab sweep params/sweeps/rank.yaml --dry-run         # validate every run, show what would run
    loralab sweep params/sweeps/rank.yaml --jobs 2          # two at a time (each gets cores/jobs threads)

Run it again after a failure or an interruption: only missing, failed or changed runs execute.
With one run at a time, the bar shows the running notebook's section and training step.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loralab.runs.shipped import working_folder
from loralab.sweeps.sweep import (
    RESULT_METRICS,
    SCORE_COLUMN,
    RunStatus,
    SweepRun,
    collect_results,
    plan_sweep,
    run_sweep,
    sweep_statuses,
    write_sweep_file,
)

SHORT_NAMES = {"eval_score_after": "score", "eval_loss_before": "eval loss0", "eval_loss_after": "eval loss",
               "train_loss_first": "loss0", "train_loss_last": "loss", "trainable_params": "trainable",
               "peak_memory_gb": "peak GB", "train_runtime_s": "train s", "wall_time_s": "wall s"}


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        return "+".join(map(str, value))
    return str(value)


def results_table(sweep_dir: Path, title: str = "") -> Table:
    """A rich table of results.csv's rows: swept values, state and the metrics that compare runs."""
    rows = collect_results(sweep_dir)
    table = Table(title=title or str(sweep_dir), show_lines=False)
    columns = [c for c in (rows[0] if rows else {}) if c not in ("run", "error", "failed_notebook")]
    if rows and not any(r["series"] for r in rows):
        columns.remove("series")
    for column in columns:
        numeric = column in RESULT_METRICS or column.endswith(SCORE_COLUMN.format(""))
        table.add_column(SHORT_NAMES.get(column, column), justify="right" if numeric else "left")
    for row in rows:
        style = {"ok": None, "failed": "red"}.get(row["state"], "yellow")
        table.add_row(*(_cell(row[c]) for c in columns), style=style)
    return table


@contextlib.contextmanager
def current_run_progress(progress: Progress, bar, label: str, jobs: int):
    """Show the running notebook's section and step in the bar's description (one run at a time).

    The kernels write their progress lines to a file (``LORALAB_PROGRESS_FILE``, loralab.train.progress)
    instead of the terminal, where they would break the bar; a thread copies the newest line into it.
    With several runs at once their lines would mix, so there only the bar moves.
    """
    from loralab.train.progress import PROGRESS_ENV, PROGRESS_FILE_ENV

    saved = {name: os.environ.get(name) for name in (PROGRESS_ENV, PROGRESS_FILE_ENV)}
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="loralab-sweep-") as scratch:
        line_file = Path(scratch) / "progress.txt"
        if jobs == 1:
            os.environ[PROGRESS_ENV], os.environ[PROGRESS_FILE_ENV] = "lines", str(line_file)
        else:
            os.environ[PROGRESS_ENV] = "none"

        def follow() -> None:
            while not stop.wait(0.5):
                try:
                    line = line_file.read_text(encoding="utf-8").strip()
                except OSError:
                    continue
                progress.update(bar, description=f"{label} · {line}" if line else label)

        watcher = threading.Thread(target=follow, daemon=True)
        if jobs == 1:
            watcher.start()
        try:
            yield
        finally:
            stop.set()
            if watcher.is_alive():
                watcher.join(timeout=2)
            progress.update(bar, description=label)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def main(argv: list[str]) -> int:
    """``loralab sweep``; a bad spec raises SweepSpecError (a ValueError), which ``loralab.cli`` prints as one line."""
    parser = argparse.ArgumentParser(prog="loralab sweep", description="Run a sweep spec (grid or run list).")
    parser.add_argument("spec", help="sweep YAML, e.g. params/sweeps/rank.yaml")
    parser.add_argument("--sweeps-root", default=str(working_folder("sweeps")),
                        help="folder that holds sweep folders (default ./sweeps; the repository's inside a checkout)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1; each run uses all cores)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per notebook cell")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs, run nothing")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 200)  # a log file gets the full table
    plan = plan_sweep(args.spec, sweeps_root=args.sweeps_root)  # SweepSpecError: loralab.cli prints one line
    console.print(f"[bold]{plan.name}[/bold]: {plan.question}", highlight=False)
    console.print(f"{len(plan.runs)} runs of {plan.notebook.name} into {plan.sweep_dir}", highlight=False)
    if args.dry_run:
        for name, status in sweep_statuses(plan).items():
            console.print(f"  {status.state:8s} {name}", highlight=False)
        write_sweep_file(plan)
        return 0
    todo = sum(not s.done for s in sweep_statuses(plan).values())
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        bar = progress.add_task(f"{plan.name}", total=todo)
        started: dict[str, float] = {}

        def on_start(run: SweepRun) -> None:
            started[run.name] = time.time()
            progress.console.print(f"  [cyan]run[/cyan]    {run.name}", highlight=False)

        def on_finish(run: SweepRun, status: RunStatus) -> None:
            seconds = time.time() - started.get(run.name, time.time())
            if status.done:
                progress.console.print(f"  [green]ok[/green]     {run.name} ({seconds:.0f} s)", highlight=False)
            else:
                progress.console.print(f"  [red]failed[/red] {run.name} ({seconds:.0f} s): {status.error}\n"
                                       f"         notebook: {status.failed_notebook}", highlight=False)
            progress.advance(bar)

        with current_run_progress(progress, bar, plan.name, args.jobs):
            outcome = run_sweep(plan, jobs=args.jobs, timeout_s=args.timeout, on_start=on_start,
                                on_finish=on_finish)
    if outcome.skipped:
        console.print(f"skipped {len(outcome.skipped)} runs already done", highlight=False)
    console.print(results_table(plan.sweep_dir, title=f"{plan.name}: {plan.question}"))
    console.print(f"results: {outcome.results_csv}", highlight=False)
    if outcome.failed:
        console.print(f"[red]{len(outcome.failed)} failed[/red]: run the same command again to retry them",
                      highlight=False)
        return 1
    return 0
