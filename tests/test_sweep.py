"""Sweeps: spec expansion and validation, status files, failure handling and reruns.

The fast tests drive ``run_sweep`` with a fake ``run_one`` (same signature as runner.run_notebook)
that writes a metrics.json or raises; the slow test runs a real two-run sweep of notebook 01 with
papermill, the report notebook on its folder, then a rerun that executes only the broken run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from loralab.sweeps.sweep import (
    MAX_RUN_NAME_BYTES,
    STATUS_FILE,
    SWEEP_FILE,
    SweepSpecError,
    collect_results,
    load_sweep_spec,
    overrides_digest,
    plan_sweep,
    run_slug,
    run_sweep,
    sweep_statuses,
)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_01 = REPO / "notebooks/01_qlora_finetune.ipynb"
TINY = REPO / "params/01_qlora_finetune/sweep_tiny.yaml"


def write_spec(tmp_path: Path, **spec) -> Path:
    spec = {"question": "Does r matter?", "notebook": str(NOTEBOOK_01), "base": str(TINY), **spec}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class FakeRunner:
    """Stands in for run_notebook: records calls, writes metrics.json, fails for chosen run names."""

    def __init__(self, fail: set[str] = frozenset(), delay: float = 0.0):
        self.fail = set(fail)
        self.calls: list[str] = []
        self.delay = delay
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0

    def __call__(self, notebook, parameters, runs_root, run_name, timeout_s, source):
        with self.lock:
            self.calls.append(run_name)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            time.sleep(self.delay)
            run_dir = Path(runs_root) / run_name
            run_dir.mkdir(parents=True, exist_ok=False)  # like run_notebook: a fresh folder per attempt
            (run_dir / Path(notebook).name).write_text("{}")
            if run_name in self.fail:
                raise RuntimeError(f"boom in {run_name}")
            scores = {"contains": parameters["lora_r"] / 100} | ({"rouge_l": 0.5} if parameters["lora_r"] > 4 else {})
            metrics = {"params": parameters, "eval_score_after": parameters["lora_r"] / 100,
                       "eval_scores_after": scores, "eval_loss_after": 2.0 / parameters["lora_r"],
                       "train_loss_last": 1.0 / parameters["lora_r"], "trainable_params": 1000 * parameters["lora_r"],
                       "peak_memory_gb": 1.5, "wall_time_s": 3.0}
            (run_dir / "metrics.json").write_text(json.dumps(metrics))
            return run_dir
        finally:
            with self.lock:
                self.running -= 1


def test_grid_expands_every_combination_with_readable_names(tmp_path):
    plan = plan_sweep(write_spec(tmp_path, grid={"lora_r": [4, 8], "target_modules": ["attention", "all-linear"]}),
                      sweeps_root=tmp_path / "sweeps")
    assert [r.name for r in plan.runs] == [
        "lora_r=4,target_modules=attention", "lora_r=4,target_modules=all-linear",
        "lora_r=8,target_modules=attention", "lora_r=8,target_modules=all-linear"]
    assert plan.knobs == ["lora_r", "target_modules"]
    assert plan.runs[3].params["max_steps"] == 3  # from the base file
    assert plan.sweep_dir == (tmp_path / "sweeps" / "spec").resolve()


def test_slugs_are_deterministic_and_path_safe():
    assert run_slug({"lora_r": 8, "lora_alpha": 16.0}) == "lora_r=8,lora_alpha=16"
    assert run_slug({"load_in_4bit": False, "learning_rate": 2.0e-4}) == "load_in_4bit=false,learning_rate=0.0002"
    assert run_slug({"target_modules": ["q_proj", "v_proj"], "dataset": "data/x y.jsonl"}) == \
        "target_modules=q_proj+v_proj,dataset=data_x_y.jsonl"


# Thirty of notebook 01's parameters, each set explicitly: their slug is far over any file-name limit.
THIRTY_OVERRIDES = {
    "lora_r": 4, "lora_alpha": 8.0, "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "max_seq_length": 96, "max_steps": 3, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
    "learning_rate": 1.0e-3, "warmup_steps": 0, "lr_scheduler_type": "constant_with_warmup",
    "weight_decay": 0.01, "optim": "adamw_torch", "seed": 3407, "logging_steps": 1, "save_steps": 25,
    "save_total_limit": 2, "resume": True, "eval_examples": 2, "eval_steps": 0, "early_stopping_patience": 0,
    "max_new_tokens": 16, "show_examples": 0, "load_in_4bit": False, "use_gradient_checkpointing": False,
    "overlong_rows": "truncate", "dataset_split": "train", "eval_fraction": 0.0, "trust_remote_code": False,
    "full_finetuning": False,
}


def test_long_run_names_are_shortened_to_a_prefix_and_a_hash():
    assert len(THIRTY_OVERRIDES) == 30
    full = ",".join(f"{k}={v}" for k, v in THIRTY_OVERRIDES.items())
    name = run_slug(THIRTY_OVERRIDES)
    assert len(full) > 400 and len(name.encode()) <= MAX_RUN_NAME_BYTES
    assert name.startswith("lora_r=4,lora_alpha=8,lora_dropout=0.05,target_modules=q_proj+")
    assert name.endswith("-" + overrides_digest(THIRTY_OVERRIDES)[:10])
    assert run_slug(dict(THIRTY_OVERRIDES)) == name
    assert run_slug({**THIRTY_OVERRIDES, "seed": 1}) != name, "same prefix, other overrides: another hash"
    # exactly at the limit: unchanged; one byte over: shortened
    at_limit = {"dataset": "d" * (MAX_RUN_NAME_BYTES - len("dataset="))}
    assert run_slug(at_limit) == "dataset=" + at_limit["dataset"]
    over = run_slug({"dataset": at_limit["dataset"] + "d"})
    assert len(over.encode()) == MAX_RUN_NAME_BYTES and over != run_slug(at_limit)
    # counted in UTF-8 bytes, never cutting a character in two
    wide = run_slug({"dataset": "é" * 80})
    assert len(wide.encode("utf-8")) <= MAX_RUN_NAME_BYTES and wide.startswith("dataset=éé")


def test_long_run_names_are_the_same_in_another_process():
    code = ("import json, sys; from loralab.sweeps.sweep import run_slug; "
            "print(run_slug(json.loads(sys.argv[1])))")
    names = {subprocess.run([sys.executable, "-c", code, json.dumps(THIRTY_OVERRIDES)], check=True,
                            capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
             for seed in ("1", "2")}
    assert names == {run_slug(THIRTY_OVERRIDES)}


def test_a_sweep_with_thirty_overrides_plans_and_runs(tmp_path):
    runs = [THIRTY_OVERRIDES, {**THIRTY_OVERRIDES, "lora_r": 8}, {**THIRTY_OVERRIDES, "seed": 1}]
    spec = write_spec(tmp_path, runs=runs)
    plan = plan_sweep(spec, sweeps_root=tmp_path / "sweeps")
    names = [run.name for run in plan.runs]
    assert all(len(name.encode()) <= MAX_RUN_NAME_BYTES for name in names)
    assert len(set(names)) == 3, names
    assert [run.name for run in plan_sweep(spec, sweeps_root=tmp_path / "sweeps").runs] == names

    runner = FakeRunner()
    outcome = run_sweep(plan, run_one=runner)
    assert outcome.failed == [] and runner.calls == names
    assert sorted(p.name for p in plan.sweep_dir.iterdir() if p.is_dir()) == sorted(names)
    # the folder name is short; the full overrides are kept next to it
    sweep = json.loads((plan.sweep_dir / SWEEP_FILE).read_text())
    assert [(r["name"], r["overrides"]) for r in sweep["runs"]] == list(zip(names, runs))
    for name, overrides in zip(names, runs):
        status = json.loads((plan.sweep_dir / name / STATUS_FILE).read_text())
        assert status["overrides"] == overrides and status["state"] == "ok"
    assert [row["lora_r"] for row in collect_results(plan.sweep_dir)] == [4, 8, 4]

    again = FakeRunner()  # the names are stable: a second run finds every run done
    assert run_sweep(plan_sweep(spec, sweeps_root=tmp_path / "sweeps"), run_one=again).skipped == names
    assert again.calls == []


def test_run_list_with_series_merges_a_run_shared_by_two_series(tmp_path):
    runs = [{"series": "2r", "lora_r": 8, "lora_alpha": 16}, {"series": "16", "lora_r": 8, "lora_alpha": 16},
            {"series": "16", "lora_r": 4, "lora_alpha": 16}]
    plan = plan_sweep(write_spec(tmp_path, runs=runs), sweeps_root=tmp_path)
    assert [(r.name, r.series) for r in plan.runs] == [("lora_r=8,lora_alpha=16", ["2r", "16"]),
                                                      ("lora_r=4,lora_alpha=16", ["16"])]
    assert "series" not in plan.runs[0].params


@pytest.mark.parametrize("spec, message", [
    ({"grid": {"lora_r": [4]}, "runs": [{"lora_r": 4}]}, "exactly one of 'grid'"),
    ({}, "exactly one of 'grid'"),
    ({"grid": {"lora_r": [4]}, "colour": "red"}, "unknown key 'colour'"),
    ({"grid": {"lora_r": []}}, "have no values"),
    ({"grid": {"lora_r": [4]}, "question": "  "}, "write the question"),
])
def test_bad_specs_are_refused_with_the_field(tmp_path, spec, message):
    with pytest.raises(SweepSpecError, match=message):
        load_sweep_spec(write_spec(tmp_path, **spec))


def test_every_expanded_run_is_validated_before_any_run_starts(tmp_path):
    runner = FakeRunner()
    spec = write_spec(tmp_path, grid={"lora_r": [4, 0, 8], "lora_rank": [1]})
    with pytest.raises(SweepSpecError) as error:
        run_sweep(plan_sweep(spec, sweeps_root=tmp_path), run_one=runner)
    assert "unknown parameter 'lora_rank'" in str(error.value) and "Nothing was run" in str(error.value)
    spec = write_spec(tmp_path, grid={"lora_r": [4, 0, 8]})
    with pytest.raises(SweepSpecError, match=r"run lora_r=0: lora_r: .*greater than or equal to 1"):
        plan_sweep(spec, sweeps_root=tmp_path)
    assert runner.calls == [] and not (tmp_path / "spec").exists()


def test_missing_notebook_or_base_is_named(tmp_path):
    with pytest.raises(SweepSpecError, match="base params file 'nope.yaml' does not exist"):
        plan_sweep(write_spec(tmp_path, base="nope.yaml", grid={"lora_r": [4]}), sweeps_root=tmp_path)


def test_run_dir_cannot_be_swept(tmp_path):
    with pytest.raises(SweepSpecError, match="run_dir is set by the sweep"):
        plan_sweep(write_spec(tmp_path, grid={"run_dir": ["a"]}), sweeps_root=tmp_path)


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    plan = plan_sweep(write_spec(tmp_path, grid={"lora_r": [4, 8, 16]}), sweeps_root=tmp_path)
    runner = FakeRunner(fail={"lora_r=8"})
    outcome = run_sweep(plan, run_one=runner)
    assert runner.calls == ["lora_r=4", "lora_r=8", "lora_r=16"]
    assert outcome.failed == ["lora_r=8"]
    status = json.loads((plan.sweep_dir / "lora_r=8" / STATUS_FILE).read_text())
    assert status["state"] == "failed" and status["error"] == "RuntimeError: boom in lora_r=8"
    assert status["failed_notebook"] == str(plan.sweep_dir / "lora_r=8" / NOTEBOOK_01.name)
    assert "Traceback" in status["traceback"]
    with open(outcome.results_csv) as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert rows["lora_r=16"]["state"] == "ok" and float(rows["lora_r=16"]["eval_score_after"]) == 0.16
    assert rows["lora_r=8"]["state"] == "failed" and rows["lora_r=8"]["eval_score_after"] == ""
    assert "boom" in rows["lora_r=8"]["error"]


def test_rerun_executes_only_missing_failed_or_changed_runs(tmp_path):
    spec = write_spec(tmp_path, grid={"lora_r": [4, 8, 16]})
    plan = plan_sweep(spec, sweeps_root=tmp_path)
    run_sweep(plan, run_one=FakeRunner(fail={"lora_r=8"}))
    (plan.sweep_dir / "lora_r=16" / "metrics.json").unlink()  # e.g. an interrupted run

    rerun = FakeRunner()
    outcome = run_sweep(plan_sweep(spec, sweeps_root=tmp_path), run_one=rerun)
    assert sorted(rerun.calls) == ["lora_r=16", "lora_r=8"]
    assert outcome.skipped == ["lora_r=4"] and outcome.failed == []
    assert all(s.done for s in outcome.statuses.values())
    assert list((plan.sweep_dir / "earlier_attempts").glob("lora_r=8.*")), "the failed attempt is kept aside"

    again = FakeRunner()
    assert run_sweep(plan_sweep(spec, sweeps_root=tmp_path), run_one=again).executed == [] and again.calls == []

    # a changed base param makes every run stale: all of them run again
    spec.write_text(spec.read_text().replace("Does r matter?", "Does r matter now?"))
    assert run_sweep(plan_sweep(spec, sweeps_root=tmp_path), run_one=FakeRunner()).executed == []
    base = tmp_path / "base.yaml"
    base.write_text(TINY.read_text().replace("max_steps: 3", "max_steps: 4"))
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "base": str(base)}, sort_keys=False))
    statuses = sweep_statuses(plan_sweep(spec, sweeps_root=tmp_path))
    assert {s.state for s in statuses.values()} == {"stale"}


def test_jobs_run_in_parallel(tmp_path):
    plan = plan_sweep(write_spec(tmp_path, grid={"lora_r": [4, 8, 16, 32]}), sweeps_root=tmp_path)
    runner = FakeRunner(delay=0.3)
    outcome = run_sweep(plan, jobs=2, run_one=runner)
    assert runner.max_running == 2 and sorted(outcome.executed) == sorted(r.name for r in plan.runs)
    assert [row["state"] for row in collect_results(plan.sweep_dir)] == ["ok"] * 4


def test_results_rows_carry_knobs_series_and_metrics(tmp_path):
    runs = [{"series": "2r", "lora_r": 4, "lora_alpha": 8}, {"series": "fixed", "lora_r": 8, "lora_alpha": 16}]
    plan = plan_sweep(write_spec(tmp_path, runs=runs), sweeps_root=tmp_path)
    run_sweep(plan, run_one=FakeRunner())
    rows = collect_results(plan.sweep_dir)
    assert [(r["run"], r["series"], r["lora_r"], r["lora_alpha"], r["trainable_params"]) for r in rows] == [
        ("lora_r=4,lora_alpha=8", "2r", 4, 8, 4000), ("lora_r=8,lora_alpha=16", "fixed", 8, 16, 8000)]
    # whatever scorers each run recorded: one column per scorer, blank where a run did not score it
    assert [(r["contains after"], r["rouge_l after"], r["eval_loss_after"]) for r in rows] == [
        (0.04, None, 0.5), (0.08, 0.5, 0.25)]
    assert list(rows[0])[-2:] == ["error", "failed_notebook"]


def test_report_helpers_group_by_knobs_and_plot(tmp_path):
    from loralab.sweeps.report import load_results, metric_plots, summary_table

    runs = [{"series": "2r", "lora_r": 4, "lora_alpha": 8}, {"series": "2r", "lora_r": 8, "lora_alpha": 16},
            {"series": "fixed", "lora_r": 8, "lora_alpha": 16}, {"series": "fixed", "lora_r": 16, "lora_alpha": 16}]
    plan = plan_sweep(write_spec(tmp_path, runs=runs), sweeps_root=tmp_path)
    run_sweep(plan, run_one=FakeRunner(fail={"lora_r=16,lora_alpha=16"}))
    results = load_results(plan.sweep_dir)
    assert len(results.table) == 3 and results.x == "lora_r" and results.hue == "series"
    # the run shared by both series appears once per series in the long table the plots use
    assert sorted(results.long["series"]) == ["2r", "2r", "fixed", "fixed"]
    table = summary_table(results)
    assert list(table.index.names) == ["series", "lora_r"]
    assert {"contains after", "rouge_l after", "eval_loss_after"} <= set(table.columns)
    paths = metric_plots(results, save_dir=plan.sweep_dir)
    assert paths and all(p.is_file() and p.stat().st_size > 1000 for p in paths)


def test_shipped_sweeps_validate_and_say_what_they_answer():
    specs = sorted((REPO / "params" / "sweeps").glob("*.yaml"))
    assert {p.stem for p in specs} >= {"rank", "targets", "quantization"}
    for path in specs:
        plan = plan_sweep(path, sweeps_root="/nonexistent")
        assert len(plan.question) > 40 and len(plan.runs) >= 2


@pytest.mark.slow
def test_two_run_sweep_end_to_end_then_rerun_only_the_broken_run(tmp_path):
    """papermill runs of notebook 01, results.csv, the report notebook, then a rerun of one run."""
    from loralab.runs.runner import run_notebook

    spec = write_spec(tmp_path, grid={"eval_scorers": [["json_shape"], []]})
    plan = plan_sweep(spec, sweeps_root=tmp_path / "sweeps")
    outcome = run_sweep(plan, timeout_s=600)
    scored, loss_only = "eval_scorers=json_shape", "eval_scorers="
    assert outcome.failed == [] and sorted(outcome.executed) == sorted([scored, loss_only])
    with open(outcome.results_csv) as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {scored, loss_only}
    for row in rows.values():
        assert row["state"] == "ok" and float(row["train_loss_last"]) > 0 and int(row["trainable_params"]) > 0
        assert float(row["eval_loss_after"]) > 0, "the held-out loss is measured with or without scorers"
    assert 0 <= float(rows[scored]["json_shape after"]) <= 1
    assert rows[scored]["eval_score_after"] == rows[scored]["json_shape after"]
    assert rows[loss_only]["eval_score_after"] == rows[loss_only]["json_shape after"] == ""

    report = run_notebook(REPO / "notebooks/02_sweep_report.ipynb", {"sweep_dir": str(plan.sweep_dir)},
                          runs_root=tmp_path / "reports", run_name="report", timeout_s=300)
    assert (report / "02_sweep_report.ipynb").is_file()
    assert list(plan.sweep_dir.glob("plot_*.png")), "the report saves its plots into the sweep folder"

    (plan.sweep_dir / loss_only / "metrics.json").unlink()
    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["run_name"])
        return run_notebook(*args, **kwargs)

    again = run_sweep(plan_sweep(spec, sweeps_root=tmp_path / "sweeps"), run_one=counting, timeout_s=600)
    assert calls == [loss_only] and again.skipped == [scored]
    assert list((plan.sweep_dir / "earlier_attempts").glob(f"{loss_only}.*")), "the broken attempt is kept"
    assert all(s.done for s in again.statuses.values())
