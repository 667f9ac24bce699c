"""Retention checks: lm-evaluation-harness tasks on the base before training and on base + adapter after.

    from loralab.eval.retention import check_retention_tasks, compare_retention, run_retention
    check_retention_tasks(cfg.retention_tasks)          # ParamsError before any model loads
    before = run_retention(model, tokenizer, cfg, "before", base_only=True)   # adapter switched off
    ...  # train
    after = run_retention(model, tokenizer, cfg, "after")
    report = compare_retention(before, after)
    print(report.verdict)            # "adapter kept general ability" / "lost 9.4 points on TASK (...)"
    display(report.table())

The evaluation is EleutherAI's lm-evaluation-harness itself (``lm_eval.simple_evaluate`` on its
``HFLM`` wrapper around the model already in memory: the adapter on its own 4-bit or 16-bit base, as
trained, no second load), with the harness's own metrics and standard errors. Task names are the
harness's (``arc_easy``, ``hellaswag``, ``mmlu``, ...) plus the local tasks shipped in
``loralab/eval/harness_tasks`` (``loralab_general_knowledge``: runs offline). A task whose data is on
the Hugging Face Hub is refused up front on a machine that cannot reach the hub (unless the data set
is in the local cache), naming the local task instead.

A change counts when it is larger than the standard error of the difference of two independent
estimates, sqrt(se_before^2 + se_after^2) (conservative: both runs answer the same questions).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import math
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from loralab.params.errors import ParamsError

LOCAL_TASKS_DIR = Path(__file__).with_name("harness_tasks")
LOCAL_TASK = "loralab_general_knowledge"
BATCH_SIZE = 8  # loglikelihood requests per forward pass; fixed, so `loralab eval --harness` repeats a run exactly
PRIMARY_METRICS = ("acc", "exact_match", "acc_norm", "f1", "mcc")  # the metric a verdict is about, first found
LOCAL_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas"})  # datasets' file builders


@functools.lru_cache(maxsize=2)
def task_manager(local_only: bool = False):
    """The harness's TaskManager over its own tasks and loralab's local ones (built once per process).

    Indexing the harness's ~14,700 tasks takes 5 s (AVX-512 machine) to 17 s (AVX2); ``local_only``
    indexes loralab's own folder alone (milliseconds).
    """
    _quiet_harness_logs()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(LOCAL_TASKS_DIR), include_defaults=not local_only)


def manager_for(tasks: list[str]):
    """The local tasks' manager when every name is one of loralab's local tasks, else the full index."""
    local = task_manager(local_only=True)
    return local if all(name in local.task_index for name in tasks) else task_manager()


def _quiet_harness_logs() -> None:
    # The harness warns on every call that a model object (not a name) was passed in: that is the design here.
    logging.getLogger("lm_eval").setLevel(logging.ERROR)


def _leaf_tasks(name: str, manager, seen: set[str] | None = None) -> list[str]:
    """The tasks a task, group or tag name stands for (a group lists tasks, groups or tags)."""
    from lm_eval.tasks._index import Kind

    seen = set() if seen is None else seen
    if name in seen:
        return []
    seen.add(name)
    entry = manager.task_index.get(name)
    if entry is None:
        return []
    if entry.kind in (Kind.TASK, Kind.PY_TASK):
        return [name]
    members: list = list(entry.tags) if entry.kind is Kind.TAG else list((entry.cfg or {}).get("task") or [])
    leaves: list[str] = []
    for member in members:
        member_name = member.get("task") if isinstance(member, dict) else member
        if isinstance(member_name, str):
            leaves += _leaf_tasks(member_name, manager, seen)
    return leaves


def hub_datasets(task: str, manager=None) -> list[str]:
    """The Hugging Face Hub data sets a task (or group, or tag) reads; [] for local tasks."""
    manager = manager or task_manager()
    found: list[str] = []
    for leaf in _leaf_tasks(task, manager):
        cfg = manager.task_index[leaf].cfg or {}
        path = cfg.get("dataset_path")
        if cfg.get("custom_dataset") or not isinstance(path, str) or path in LOCAL_BUILDERS:
            continue
        if os.path.exists(os.path.expanduser(path)):
            continue
        if path not in found:
            found.append(path)
    return found


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """True when the Hugging Face Hub answers a TCP connection (False at once under HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def dataset_cached(dataset_path: str) -> bool:
    """True when ``datasets`` or the hub cache already holds ``org/name`` (so it loads offline)."""
    from huggingface_hub import constants

    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE", Path(constants.HF_HOME) / "datasets"))
    hub_cache = Path(constants.HF_HUB_CACHE)
    return ((datasets_cache / dataset_path.replace("/", "___")).is_dir()
            or (hub_cache / f"datasets--{dataset_path.replace('/', '--')}").is_dir())


def check_retention_tasks(tasks: list[str], reachable: bool | None = None) -> None:
    """Raise ParamsError for a task name the harness does not know (nearest names suggested), or a task
    whose data is on the hub when this machine cannot reach it and has no cached copy."""
    if not tasks:
        return
    manager = manager_for(tasks)
    known = manager.all_tasks
    for name in tasks:
        if name not in manager.task_index:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise ParamsError(f"retention_tasks: {name!r} is not an lm-evaluation-harness task; {hint}"
                              f"`lm_eval ls tasks` lists them, and {LOCAL_TASK} runs offline.")
    for name in tasks:
        missing = [path for path in hub_datasets(name, manager) if not dataset_cached(path)]
        if not missing:
            continue
        if reachable is None:
            reachable = hub_reachable()
        if not reachable:
            raise ParamsError(f"retention_tasks: {name!r} reads {', '.join(missing)} from the Hugging Face Hub, which "
                              f"this machine cannot reach (and has no cached copy): run it where the hub is "
                              f"reachable (Colab, Kaggle), or use the local task {LOCAL_TASK}.")


@dataclass
class TaskScore:
    """One task's result: every metric the harness reported, with its standard error where it gave one."""

    task: str
    metrics: dict[str, float]
    stderrs: dict[str, float]
    samples: int

    @property
    def primary(self) -> str:
        """The metric a verdict is about: acc (or exact_match, ...), else the first one reported."""
        return next((m for m in PRIMARY_METRICS if m in self.metrics), next(iter(self.metrics), ""))


@dataclass
class RetentionResult:
    """The harness's scores of one model (``label`` before/after) on each retention task."""

    label: str
    tasks: dict[str, TaskScore] = field(default_factory=dict)
    limit: int | None = None
    harness_version: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "limit": self.limit, "harness_version": self.harness_version,
                "tasks": {name: {"metrics": s.metrics, "stderrs": s.stderrs, "samples": s.samples}
                          for name, s in self.tasks.items()}}

    def summary(self) -> str:
        parts = [f"{name} {s.primary} {s.metrics[s.primary]:.3f} (±{s.stderrs.get(s.primary, float('nan')):.3f}, "
                 f"n={s.samples})" for name, s in self.tasks.items() if s.primary]
        return f"retention {self.label}: " + "; ".join(parts)


def _scores_from(results: dict[str, Any], requested: list[str], manager) -> dict[str, TaskScore]:
    """The harness's result table, one TaskScore per requested name (a tag: one per task in it)."""
    names: list[str] = []
    for name in requested:
        names += [name] if name in results["results"] else _leaf_tasks(name, manager)
    scores: dict[str, TaskScore] = {}
    for name in names:
        row = results["results"].get(name)
        if row is None:
            continue
        metrics, stderrs = {}, {}
        for key, value in row.items():
            if "," not in key or not isinstance(value, (int, float)):
                continue
            metric, _filter = key.split(",", 1)
            if metric.endswith("_stderr"):
                if isinstance(value, float) and not math.isnan(value):
                    stderrs[metric.removesuffix("_stderr")] = float(value)
            else:
                metrics[metric] = float(value)
        samples = (results.get("n-samples") or {}).get(name, {}).get("effective") or row.get("sample_len") or 0
        scores[name] = TaskScore(name, metrics, stderrs, int(samples))
    return scores


@contextlib.contextmanager
def _untouched_run_state(model):
    """Keep the caller's random-number states and the model's train/eval mode: the harness seeds
    random, numpy and torch and puts the model in eval mode; a training run must not notice."""
    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    training = model.training
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        model.train(training)


def evaluate_tasks(model, tokenizer, tasks: list[str], limit: int | None, label: str,
                   base_only: bool = False) -> RetentionResult:
    """Run the harness on ``model`` as it is in memory (``base_only``: with its adapters switched off)."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    manager = manager_for(list(tasks))
    adapters_off = model.disable_adapter() if base_only and hasattr(model, "disable_adapter") else contextlib.nullcontext()
    # The harness draws progress bars on stderr; in an executed notebook they would be pages of text.
    with _untouched_run_state(model), adapters_off, open(os.devnull, "w") as sink, contextlib.redirect_stderr(sink):
        harness_model = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=BATCH_SIZE)
        results = lm_eval.simple_evaluate(model=harness_model, tasks=list(tasks), limit=limit, task_manager=manager,
                                          log_samples=False)
    return RetentionResult(label=label, tasks=_scores_from(results, list(tasks), manager), limit=limit,
                           harness_version=getattr(lm_eval, "__version__", ""))


def run_retention(model, tokenizer, cfg, label: str, base_only: bool = False) -> RetentionResult | None:
    """``cfg.retention_tasks`` with ``cfg.retention_limit`` examples each; None when the run asks for none."""
    if not cfg.retention_tasks:
        return None
    result = evaluate_tasks(model, tokenizer, cfg.retention_tasks, cfg.retention_limit, label, base_only=base_only)
    print(result.summary())
    return result


@dataclass
class RetentionRow:
    """One task's before/after on its primary metric, and what the change means."""

    task: str
    metric: str
    before: float
    after: float
    stderr: float  # of the difference: sqrt(se_before^2 + se_after^2)
    samples: int

    @property
    def change(self) -> float:
        return self.after - self.before

    @property
    def outcome(self) -> str:
        """'lost', 'gained' or 'kept' (a change within the standard error)."""
        if self.change < -self.stderr:
            return "lost"
        if self.change > self.stderr:
            return "gained"
        return "kept"

    @property
    def sentence(self) -> str:
        scores = f"{self.metric} {self.before:.3f} -> {self.after:.3f}"
        points = abs(self.change) * 100
        if self.outcome == "kept":
            return f"kept {self.task} ({scores}, within its standard error {self.stderr:.3f})"
        return (f"{self.outcome} {points:.1f} points on {self.task} ({scores}, more than its standard error "
                f"{self.stderr:.3f})")


@dataclass
class RetentionReport:
    """Before against after for every retention task, with a verdict a user can read."""

    rows: list[RetentionRow]

    @property
    def verdict(self) -> str:
        lost = [row for row in self.rows if row.outcome == "lost"]
        if not lost:
            return "adapter kept general ability: " + "; ".join(row.sentence for row in self.rows)
        return "adapter " + "; ".join(row.sentence for row in lost)

    def table(self):
        """A pandas DataFrame: task, metric, before, after, change, stderr, outcome."""
        import pandas as pd

        return pd.DataFrame([{"task": r.task, "metric": r.metric, "before": round(r.before, 4),
                              "after": round(r.after, 4), "change": round(r.change, 4),
                              "stderr of change": round(r.stderr, 4), "n": r.samples, "outcome": r.outcome}
                             for r in self.rows])

    def as_json(self) -> list[dict[str, Any]]:
        return [{"task": r.task, "metric": r.metric, "before": r.before, "after": r.after, "change": r.change,
                 "stderr": r.stderr, "samples": r.samples, "outcome": r.outcome, "sentence": r.sentence}
                for r in self.rows]


def compare_retention(before: RetentionResult | None, after: RetentionResult | None) -> RetentionReport | None:
    """Each task's primary metric before and after; None when the run has no retention tasks."""
    if before is None or after is None:
        return None
    rows = []
    for name, first in before.tasks.items():
        second = after.tasks.get(name)
        metric = first.primary
        if second is None or not metric or metric not in second.metrics:
            continue
        stderr = math.hypot(first.stderrs.get(metric, 0.0), second.stderrs.get(metric, 0.0))
        rows.append(RetentionRow(name, metric, first.metrics[metric], second.metrics[metric], stderr,
                                 min(first.samples, second.samples)))
    return RetentionReport(rows)


def retention_metrics(before: RetentionResult | None, after: RetentionResult | None) -> dict[str, Any]:
    """What metrics.json records: both results, the before/after rows and the verdict ({} without tasks)."""
    report = compare_retention(before, after)
    if report is None:
        return {}
    return {"retention_before": before.as_json(), "retention_after": after.as_json(),
            "retention": report.as_json(), "retention_verdict": report.verdict}
