"""Sweeps: one base params file plus a grid (or a list of runs), run as papermill runs of a notebook.

    loralab sweep params/sweeps/rank.yaml              # CLI (loralab/sweeps/cli.py): progress bar, table
    loralab sweep params/sweeps/rank.yaml --jobs 2     # two runs at a time

From Python (tests, other tools)::

    from loralab.sweeps.sweep import load_sweep_spec, plan_sweep, run_sweep
    spec = load_sweep_spec("params/sweeps/rank.yaml")
    plan = plan_sweep(spec, sweeps_root="sweeps")       # every run's params validated, nothing run yet
    outcome = run_sweep(plan, jobs=1)                    # runs what is missing, failed or changed

A sweep spec (YAML) holds ``question`` (what the sweep answers), ``notebook``, ``base`` (a params
file), and either ``grid`` (name -> list of values, every combination) or ``runs`` (a list of
param mappings; an entry may carry ``series: <label>`` to group runs in the report). Relative paths
(the spec's own, ``notebook``, ``base``) are read from the current folder, else from the shipped
notebooks and params (the repository in a checkout, ``loralab/shipped/`` after ``pip install``:
see ``loralab.runs.shipped``), so ``loralab sweep params/sweeps/rank.yaml`` works from any folder.

The sweeps folder is ``--sweeps-root``, by default ``./sweeps`` (the repository's ``sweeps/``
anywhere inside a checkout).

The sweep folder ``<sweeps_root>/<name>/`` holds ``sweep.json`` (the question and every run's
params), one run folder per run (executed notebook, metrics.json, adapter, ...), a
``sweep_status.json`` in each run folder (ok/failed, error text, the failing notebook, the run's
overrides and params) and ``results.csv`` (one row per run). A run folder is named after its
overrides (``lora_r=8,lora_alpha=16``); a name over 100 bytes becomes a prefix plus a hash of the
overrides (see ``run_slug``). Running the same spec again executes only the runs that are
missing, failed, or whose params changed; an earlier attempt of such a run (failed, interrupted or
stale) is moved to ``earlier_attempts/`` first.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loralab.atomic_file import file_written_aside, write_text_aside
from loralab.params.errors import ParamsError
from loralab.params.yaml_reader import read_params_file
from loralab.runs.shipped import shipped_root, working_folder

STATUS_FILE = "sweep_status.json"
SWEEP_FILE = "sweep.json"
RESULTS_FILE = "results.csv"
SERIES_KEY = "series"
# A run folder's name, in UTF-8 bytes: far below the 255-byte name limit of common file systems, so
# ``earlier_attempts/<name>.<time>`` fits too. Longer slugs become a readable prefix plus a hash.
MAX_RUN_NAME_BYTES = 100
RUN_NAME_HASH_CHARS = 10
RESULT_METRICS = ("eval_score_after", "eval_loss_before", "eval_loss_after", "preference_accuracy_after",
                  "preference_margin_after", "train_loss_first", "train_loss_last", "trainable_params",
                  "peak_memory_gb", "train_runtime_s", "wall_time_s")
# Each scorer a run recorded (metrics.json eval_scores_after) becomes a column "<scorer> after", and so
# does each retention task's primary metric ("<task> <metric> after"; the base's score is the same in
# every run of a sweep, so the after-scores compare directly).
SCORE_COLUMN = "{} after"


def score_columns(metrics: dict[str, Any]) -> dict[str, float]:
    """``{"json_shape after": 0.9, "arc_easy acc after": 0.71}``: every after-score a run's metrics.json holds."""
    columns = {SCORE_COLUMN.format(name): value for name, value in (metrics.get("eval_scores_after") or {}).items()}
    for row in metrics.get("retention") or []:
        columns[SCORE_COLUMN.format(f"{row['task']} {row['metric']}")] = row["after"]
    return columns

# The function that executes one run: the signature of loralab.runs.runner.run_notebook.
RunOne = Callable[..., Path]


class SweepSpecError(ValueError):
    """A sweep spec that cannot run; the message names the field or run and says what to change."""


class SweepSpec(BaseModel):
    """A sweep file: the question it answers, the notebook, a base params file, and a grid or a run list."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(description="the question this sweep answers, in one or two sentences")
    notebook: str = Field(description="the notebook each run executes, e.g. notebooks/01_qlora_finetune.ipynb")
    base: str | None = Field(None, description="params file every run starts from")
    grid: dict[str, list[Any]] | None = Field(None, description="name -> list of values; every combination runs")
    runs: list[dict[str, Any]] | None = Field(None, description="explicit list of param overrides, one per run")
    name: str | None = Field(None, description="sweep folder name (default: the spec file's name)")

    @field_validator("question")
    @classmethod
    def _has_question(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("write the question this sweep answers")
        return value.strip()

    @field_validator("grid")
    @classmethod
    def _grid_lists(cls, value: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        if value is not None:
            if not value:
                raise ValueError("the grid needs at least one parameter with a list of values")
            empty = [k for k, v in value.items() if not v]
            if empty:
                raise ValueError(f"grid entries {empty} have no values: give each at least one")
        return value

    @field_validator("runs")
    @classmethod
    def _runs_not_empty(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None and not value:
            raise ValueError("the run list is empty: give at least one mapping of parameters")
        return value

    @model_validator(mode="after")
    def _grid_or_runs(self) -> SweepSpec:
        if (self.grid is None) == (self.runs is None):
            raise ValueError("give exactly one of 'grid' (name -> list of values) or 'runs' (a list of mappings)")
        return self


@dataclass
class SweepRun:
    """One run of a sweep: its folder name, the swept values, the series it belongs to, its full params."""

    name: str
    overrides: dict[str, Any]
    params: dict[str, Any]
    series: list[str] = field(default_factory=list)


@dataclass
class SweepPlan:
    """A validated sweep: where it writes, which notebook, and every run (nothing executed yet)."""

    name: str
    question: str
    notebook: Path
    base: Path | None
    sweep_dir: Path
    knobs: list[str]
    runs: list[SweepRun]


@dataclass
class RunStatus:
    """What ``sweep_status.json`` says about one run."""

    run: str
    state: str  # ok | failed | missing | stale | running
    error: str | None = None
    failed_notebook: str | None = None
    seconds: float | None = None

    @property
    def done(self) -> bool:
        return self.state == "ok"


@dataclass
class SweepOutcome:
    """What one ``run_sweep`` call did: the runs it executed, the ones it skipped, and the results file."""

    executed: list[str]
    skipped: list[str]
    statuses: dict[str, RunStatus]
    results_csv: Path

    @property
    def failed(self) -> list[str]:
        return [name for name, status in self.statuses.items() if status.state == "failed"]


def _resolve(path: str, what: str) -> Path:
    candidate = Path(path).expanduser()
    for option in ([candidate] if candidate.is_absolute() else [Path.cwd() / candidate, shipped_root() / candidate]):
        if option.exists():
            return option.resolve()
    raise SweepSpecError(f"{what} {path!r} does not exist (relative paths are read from the current "
                         f"folder, then from {shipped_root()}).")


def load_sweep_spec(path: str | Path) -> tuple[SweepSpec, str]:
    """Read a sweep YAML file; return the spec and the sweep's name (``name:`` or the file's stem).

    A relative path not found from the current folder is read from the shipped params
    (``params/sweeps/rank.yaml``).
    """
    path = Path(path)
    shipped = shipped_root() / path
    if not path.exists() and not path.is_absolute() and shipped.is_file():
        path = shipped
    try:
        data = read_params_file(path)
    except ParamsError as error:
        raise SweepSpecError(str(error)) from None
    try:
        spec = SweepSpec(**data)
    except (ValidationError, TypeError) as error:
        if isinstance(error, TypeError):
            raise SweepSpecError(f"{path}: {error}") from None
        lines = []
        for e in error.errors():
            where = ".".join(str(p) for p in e["loc"]) or "spec"
            if e["type"] == "extra_forbidden":
                lines.append(f"unknown key {where!r}; a sweep file has {', '.join(SweepSpec.model_fields)}.")
            else:
                lines.append(f"{where}: {e['msg'].removeprefix('Value error, ')}.")
        raise SweepSpecError(f"{path}: " + " ".join(lines)) from None
    return spec, spec.name or path.stem


def _slug_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, (list, tuple)):
        return "+".join(_slug_value(v) for v in value)
    text = str(value)
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in text)


def overrides_digest(overrides: dict[str, Any]) -> str:
    """SHA-256 (hex) of the overrides as canonical JSON (sorted keys): the same in every run and process."""
    canonical = json.dumps(overrides, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def run_slug(overrides: dict[str, Any]) -> str:
    """A readable, deterministic folder name for one run: ``lora_r=8,lora_alpha=16``.

    A name longer than ``MAX_RUN_NAME_BYTES`` (UTF-8 bytes) is cut to its first bytes and ended with
    ``-`` and the first ``RUN_NAME_HASH_CHARS`` hex digits of ``overrides_digest``, e.g.
    ``lora_r=4,lora_alpha=8,lora_dropout=0.05,target_modules=q_proj+k_proj+v_proj+o_proj+gate_p-3b1fb59268``
    for thirty overrides: it always fits a file name, is the same in every process, and different
    overrides get different names. The full overrides are in sweep.json and the run's sweep_status.json.
    """
    if not overrides:
        return "base"
    slug = ",".join(f"{key}={_slug_value(value)}" for key, value in overrides.items())
    if len(slug.encode("utf-8")) <= MAX_RUN_NAME_BYTES:
        return slug
    suffix = "-" + overrides_digest(overrides)[:RUN_NAME_HASH_CHARS]
    prefix = slug.encode("utf-8")[:MAX_RUN_NAME_BYTES - len(suffix)].decode("utf-8", errors="ignore")
    return prefix.rstrip(",=.-") + suffix


def _expand(spec: SweepSpec) -> list[tuple[dict[str, Any], str | None]]:
    if spec.grid is not None:
        keys = list(spec.grid)
        return [(dict(zip(keys, combo)), None) for combo in itertools.product(*spec.grid.values())]
    expanded = []
    for i, entry in enumerate(spec.runs or []):
        if not isinstance(entry, dict):
            raise SweepSpecError(f"runs[{i}] must be a mapping of name: value, got {type(entry).__name__}.")
        overrides = {k: v for k, v in entry.items() if k != SERIES_KEY}
        series = entry.get(SERIES_KEY)
        if series is not None and not isinstance(series, str):
            raise SweepSpecError(f"runs[{i}].series must be a text label such as 'alpha = 2r', got {series!r}.")
        expanded.append((overrides, series))
    return expanded


def plan_sweep(spec: SweepSpec | str | Path, sweeps_root: str | Path | None = None,
               name: str | None = None) -> SweepPlan:
    """Expand the spec into runs and validate EVERY run's params before anything runs."""
    if not isinstance(spec, SweepSpec):
        spec, name = load_sweep_spec(spec)
    name = name or spec.name or "sweep"
    notebook = _resolve(spec.notebook, "notebook")
    base_path = _resolve(spec.base, "base params file") if spec.base else None
    base = read_params_file(base_path) if base_path else {}
    from loralab.runs.runner import folder_param as output_folder_param
    from loralab.runs.runner import validate_for_notebook

    folder_param = output_folder_param(notebook)
    runs: dict[str, SweepRun] = {}
    problems = []
    for overrides, series in _expand(spec):
        slug = run_slug(overrides)
        if folder_param and folder_param in overrides:
            problems.append(f"run {slug}: {folder_param} is set by the sweep (one folder per run); remove it.")
            continue
        params = {k: v for k, v in {**base, **overrides}.items() if k != folder_param}
        try:
            validate_for_notebook(notebook, params, source=f"run {slug}")  # exactly as loralab run checks
        except ValueError as error:
            problems.append(str(error))
            continue
        if slug in runs:
            if runs[slug].params != params:
                problems.append(f"runs {slug}: two runs get the same folder name with different params; "
                                "make their swept values differ in text.")
            elif series is None or series in runs[slug].series:
                problems.append(f"run {slug} is listed twice; remove one.")
            else:
                runs[slug].series.append(series)
            continue
        runs[slug] = SweepRun(slug, overrides, params, [series] if series else [])
    if problems:
        raise SweepSpecError(f"sweep {name!r}: " + " ".join(problems) + " Nothing was run.")
    knobs = list(dict.fromkeys(k for run in runs.values() for k in run.overrides))
    root = Path(sweeps_root) if sweeps_root is not None else working_folder("sweeps")
    return SweepPlan(name=name, question=spec.question, notebook=notebook, base=base_path,
                     sweep_dir=(root / name).resolve(), knobs=knobs, runs=list(runs.values()))


def read_status(sweep_dir: Path, run: SweepRun) -> RunStatus:
    """ok only when the run's status says ok, its params are today's and its metrics.json exists."""
    status_path = sweep_dir / run.name / STATUS_FILE
    if not status_path.is_file():
        return RunStatus(run.name, "missing")
    data = json.loads(status_path.read_text())
    if data.get("params") != run.params:
        return RunStatus(run.name, "stale", error="params changed since this run")
    if data.get("state") == "ok" and not (sweep_dir / run.name / "metrics.json").is_file():
        return RunStatus(run.name, "missing", error="metrics.json is missing")
    return RunStatus(run.name, data.get("state", "missing"), data.get("error"), data.get("failed_notebook"),
                     data.get("seconds"))


def sweep_statuses(plan: SweepPlan) -> dict[str, RunStatus]:
    """The current state of every run of the plan, read from the sweep folder."""
    return {run.name: read_status(plan.sweep_dir, run) for run in plan.runs}


def _write_json(path: Path, data: dict) -> None:
    write_text_aside(path, json.dumps(data, indent=2, default=str))


def write_sweep_file(plan: SweepPlan) -> Path:
    """``sweep.json``: the question, notebook, knobs and every run's params (what the report reads)."""
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    path = plan.sweep_dir / SWEEP_FILE
    _write_json(path, {
        "name": plan.name, "question": plan.question, "notebook": str(plan.notebook),
        "base": str(plan.base) if plan.base else None, "knobs": plan.knobs,
        "runs": [{"name": r.name, "overrides": r.overrides, "series": r.series, "params": r.params}
                 for r in plan.runs],
    })
    return path


def _error_text(error: BaseException) -> str:
    if hasattr(error, "ename") and hasattr(error, "evalue"):  # papermill.PapermillExecutionError
        cell = getattr(error, "exec_count", None)
        return f"{error.ename}: {error.evalue}" + (f" (cell {cell})" if cell is not None else "")
    return f"{type(error).__name__}: {error}"


def _set_aside(sweep_dir: Path, run: SweepRun) -> None:
    """Move an earlier (failed, stale or interrupted) attempt out of the way, keeping it for reading."""
    folder = sweep_dir / run.name
    if folder.exists():
        target = sweep_dir / "earlier_attempts" / f"{run.name}.{time.strftime('%Y%m%d-%H%M%S')}"
        target.parent.mkdir(parents=True, exist_ok=True)
        while target.exists():
            target = target.with_name(target.name + "_")
        shutil.move(str(folder), str(target))


def execute_run(plan: SweepPlan, run: SweepRun, run_one: RunOne, timeout_s: int) -> RunStatus:
    """Run one run into its folder and write its ``sweep_status.json``; never raises for a failed run."""
    _set_aside(plan.sweep_dir, run)
    started = time.time()
    record: dict[str, Any] = {"run": run.name, "overrides": run.overrides, "params": run.params,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        run_one(plan.notebook, run.params, runs_root=plan.sweep_dir, run_name=run.name, timeout_s=timeout_s,
                source=f"run {run.name}")
        state, error = "ok", None
        if not (plan.sweep_dir / run.name / "metrics.json").is_file():
            state, error = "failed", "the notebook finished but wrote no metrics.json"
    except Exception as exc:  # noqa: BLE001  a failed run is recorded, the sweep goes on
        state, error = "failed", _error_text(exc)
        record["traceback"] = traceback.format_exc()
    notebook_out = plan.sweep_dir / run.name / plan.notebook.name
    failed_notebook = str(notebook_out) if state == "failed" and notebook_out.is_file() else None
    seconds = round(time.time() - started, 1)
    record.update(state=state, error=error, failed_notebook=failed_notebook, seconds=seconds)
    (plan.sweep_dir / run.name).mkdir(parents=True, exist_ok=True)
    _write_json(plan.sweep_dir / run.name / STATUS_FILE, record)
    return RunStatus(run.name, state, error, failed_notebook, seconds)


def collect_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """One row per run of ``sweep.json``: name, series, state, swept values and the metrics that compare runs."""
    sweep_dir = Path(sweep_dir)
    sweep_file = sweep_dir / SWEEP_FILE
    if not sweep_file.is_file():
        raise SweepSpecError(f"{sweep_dir} holds no {SWEEP_FILE}: pass a folder that `loralab sweep` wrote.")
    sweep = json.loads(sweep_file.read_text())
    rows = []
    for run in sweep["runs"]:
        folder = sweep_dir / run["name"]
        status_path = folder / STATUS_FILE
        status = json.loads(status_path.read_text()) if status_path.is_file() else {}
        state = status.get("state", "missing") if status.get("params", run["params"]) == run["params"] else "stale"
        metrics_path = folder / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() and state == "ok" else {}
        row: dict[str, Any] = {"run": run["name"], "series": " | ".join(run.get("series") or []), "state": state}
        row.update({knob: run["params"].get(knob) for knob in sweep["knobs"]})
        row.update({key: metrics.get(key) for key in RESULT_METRICS})
        row.update(score_columns(metrics))
        row["error"] = status.get("error") if state == "failed" else None
        row["failed_notebook"] = status.get("failed_notebook") if state == "failed" else None
        rows.append(row)
    # runs may have recorded different scorers: every row gets every column, error columns last
    columns = list(dict.fromkeys(key for row in rows for key in row if key not in ("error", "failed_notebook")))
    return [{**{c: row.get(c) for c in columns}, "error": row["error"], "failed_notebook": row["failed_notebook"]}
            for row in rows]


def write_results_csv(sweep_dir: str | Path) -> Path:
    """Write ``results.csv`` (one row per run; list values such as target_modules joined with '+')."""
    rows = collect_results(sweep_dir)
    path = Path(sweep_dir) / RESULTS_FILE
    with file_written_aside(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["run"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "+".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
    return path


def run_sweep(plan: SweepPlan, jobs: int = 1, run_one: RunOne | None = None, timeout_s: int = 3600,
              on_start: Callable[[SweepRun], None] | None = None,
              on_finish: Callable[[SweepRun, RunStatus], None] | None = None) -> SweepOutcome:
    """Execute every run that is not ok yet (missing, failed, stale), ``jobs`` at a time; write results.csv.

    ``run_one`` defaults to ``loralab.runs.runner.run_notebook``; tests pass a fake with the same signature.
    A failing run is recorded in its ``sweep_status.json`` and the others go on.
    """
    if jobs < 1:
        raise SweepSpecError(f"jobs must be 1 or more, got {jobs}.")
    if run_one is None:
        from loralab.runs.runner import run_notebook as run_one
    write_sweep_file(plan)
    before = sweep_statuses(plan)
    todo = [run for run in plan.runs if not before[run.name].done]
    skipped = [run.name for run in plan.runs if before[run.name].done]
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:  # share the cores instead of oversubscribing
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))

    csv_lock = threading.Lock()

    def one(run: SweepRun) -> RunStatus:
        if on_start:
            on_start(run)
        status = execute_run(plan, run, run_one, timeout_s)
        with csv_lock:  # results.csv is current after every run, so an interrupted sweep still has a table
            write_results_csv(plan.sweep_dir)
        if on_finish:
            on_finish(run, status)
        return status

    if jobs == 1:
        for run in todo:
            one(run)
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for future in as_completed([pool.submit(one, run) for run in todo]):
                future.result()
    results_csv = write_results_csv(plan.sweep_dir)
    return SweepOutcome(executed=[run.name for run in todo], skipped=skipped, statuses=sweep_statuses(plan),
                        results_csv=results_csv)
