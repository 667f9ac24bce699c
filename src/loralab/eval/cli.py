"""``loralab eval``: score saved adapters, full models or the bare base on held-out rows, without training.

    loralab eval runs/<run>/adapter                           # the run's own held-out rows and scorers (manifest)
    loralab eval runs/<run>/adapter --base                    # ... and the bare base next to it
    loralab eval runs/a/adapter runs/b/adapter -p eval_dataset my_eval.jsonl -p eval_scorers "[contains, rouge_l]"
    loralab eval --base -f params/01_qlora_finetune/default.yaml --json     # the base alone, JSON for scripts
    loralab eval runs/<run>/adapter --harness --harness-only  # the run's retention_tasks again (lm-evaluation-harness)
    loralab eval runs/<run>/adapter --base --harness arc_easy,hellaswag --harness-limit 200

The eval settings (held-out rows, scorers, ``eval_examples``, ``max_new_tokens``, ``max_seq_length``)
come from ``-f`` params files, else from the first adapter's manifest (the params it was trained
with), then ``-p NAME VALUE`` overrides. Each adapter is checked against its base through its manifest
before it loads, on the base it was trained on (4-bit or 16-bit). Greedy decoding, the same rows and
batches as notebook 01: an adapter's scores equal the run's after-scores, the base's its before-scores.
``--harness`` adds lm-evaluation-harness tasks (``loralab.eval.retention``): the run's own
``retention_tasks`` and ``retention_limit`` when no task is named, so an adapter's harness scores equal
the run's retention-after scores, and ``--base`` next to it gives the before/after verdict.
Writes an eval folder (``eval.json``, ``eval_examples.jsonl``) and prints a table.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from loralab.params.errors import ParamsError
from loralab.params.run_config import RunConfig
from loralab.params.yaml_reader import param_value, read_params_file, yaml_problem

EVAL_FILE = "eval.json"
EXAMPLES_FILE = "eval_examples.jsonl"


def _manifest_params(model_dir: Path) -> dict[str, Any]:
    from loralab.adapters.manifest import read_manifest

    manifest = read_manifest(model_dir)
    return dict((manifest.training if manifest else None) or {})


def eval_config(models: list[Path], params_files: list[str], overrides: dict[str, Any],
                need_held_out: bool = True) -> RunConfig:
    """The run config whose eval settings are used: params files, else the first adapter's manifest, then -p."""
    from loralab.params.runtime_check import validate_params_for_this_machine

    params: dict[str, Any] = {}
    if params_files:
        for path in params_files:
            params.update(read_params_file(path))
    elif models:
        params = _manifest_params(models[0])
        if not params:
            raise ParamsError(f"{models[0]} has no loralab_manifest.json with its training params: pass -f a params "
                              "file (or -p eval_dataset ... -p eval_scorers ...) to say what to evaluate on.")
    params.update(overrides)
    params.pop("run_dir", None)
    cfg = validate_params_for_this_machine(params, source=" + ".join(params_files) or "eval params")
    if need_held_out and not cfg.has_eval:
        raise ParamsError("nothing to evaluate on: set eval_dataset (a .jsonl path, embedded/<name> or a hub "
                          "dataset with eval_split), or eval_fraction of the training dataset.")
    return cfg


def _label(path: Path, taken: set[str]) -> str:
    label = path.parent.name if path.name in ("adapter", "model", "merged") else path.name
    while label in taken:
        label += "'"
    taken.add(label)
    return label


def _load(target: Path | None, cfg: RunConfig, allow_base_mismatch: bool):
    """(model, tokenizer) of an adapter folder, a full model folder, or (None) the base in cfg."""
    from loralab.adapters.verified_loading import load_verified_adapter
    from loralab.model.loading import load_model

    if target is not None and (target / "adapter_config.json").is_file():
        return load_verified_adapter(target, max_seq_length=cfg.max_seq_length, allow_base_mismatch=allow_base_mismatch)
    if target is not None:
        cfg = cfg.model_copy(update={"model_name": str(target), "load_in_4bit": False, "full_finetuning": False})
    return load_model(cfg)


def evaluate_models(targets: list[Path | None], labels: list[str], cfg: RunConfig, data,
                    allow_base_mismatch: bool = False, held_out: bool = True) -> list[tuple]:
    """Load each target in turn (None: the base), measure held-out loss and scores and the retention tasks,
    free it; (EvalResult or None, RetentionResult or None) per target."""
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.eval.evaluate import evaluate
    from loralab.eval.retention import evaluate_tasks
    from loralab.train.trainer import build_eval_trainer

    results = []
    eval_dataset = to_prompt_completion(data.eval) if held_out else None
    for target, label in zip(targets, labels):
        model, tokenizer = _load(target, cfg, allow_base_mismatch)
        scored = retention = None
        if held_out:
            with tempfile.TemporaryDirectory(prefix="loralab-eval-") as scratch:
                trainer = build_eval_trainer(model, tokenizer, eval_dataset, cfg, output_dir=scratch)
                scored = evaluate(model, tokenizer, data, trainer, cfg.max_new_tokens, label=label)
            del trainer
        if cfg.retention_tasks:
            retention = evaluate_tasks(model, tokenizer, cfg.retention_tasks, cfg.retention_limit, label)
        results.append((scored, retention))
        del model, tokenizer
        gc.collect()
    return results


def results_json(results: list[tuple], data, cfg: RunConfig, targets: list[Path | None]) -> dict[str, Any]:
    """What ``eval.json`` holds: the settings, the held-out rows and one entry per model."""
    from loralab.eval.retention import compare_retention
    from loralab.model.fingerprints import dataset_sha256

    report: dict[str, Any] = {"params": cfg.model_dump(), "retention_tasks": list(cfg.retention_tasks),
                              "retention_limit": cfg.retention_limit, "models": []}
    if data is not None:
        report.update({"eval_source": data.splits.source, "eval_rows": len(data.eval),
                       "eval_rows_leaked": len(data.splits.leaked), "eval_examples": len(data.scored_rows),
                       "eval_dataset_sha256": dataset_sha256(data.eval), "scorers": [s.name for s in data.scorers]})
    for (scored, retention), target in zip(results, targets):
        entry: dict[str, Any] = {"label": (scored or retention).label,
                                 "path": str(target) if target is not None else cfg.model_name}
        if scored is not None:
            entry.update({"eval_loss": scored.loss, "eval_perplexity": scored.perplexity, "scores": scored.scores,
                          "scorer_failures": scored.failures})
        if retention is not None:
            entry["retention"] = retention.as_json()
        report["models"].append(entry)
    if targets and targets[0] is None and len(results) > 1 and results[0][1] is not None:
        base = results[0][1]  # --base came first: each adapter against it
        report["retention_vs_base"] = {entry["label"]: compare_retention(base, retention).verdict
                                       for entry, (_, retention) in zip(report["models"][1:], results[1:])}
    return report


def results_table(report: dict[str, Any]):
    """A rich table: one row per model, held-out loss, perplexity, each scorer's mean, each retention task."""
    from rich.table import Table

    held_out = "eval_source" in report
    title = (f"held-out: {report['eval_source']} ({report['eval_rows']} rows, {report['eval_examples']} prompts "
             "scored)") if held_out else "retention (lm-evaluation-harness)"
    table = Table(title=title)
    table.add_column("model")
    if held_out:
        table.add_column("held-out loss", justify="right")
        table.add_column("perplexity", justify="right")
        for name in report["scorers"]:
            table.add_column(name, justify="right")
    tasks = report.get("retention_tasks") or []
    first = next((m["retention"]["tasks"] for m in report["models"] if "retention" in m), {})
    task_names = [name for name in first] or tasks
    for name in task_names:
        table.add_column(name, justify="right")
    for model in report["models"]:
        cells = []
        if held_out:
            cells = [f"{model['eval_loss']:.4f}", f"{model['eval_perplexity']:.2f}",
                     *(f"{model['scores'][n]:.3f}" for n in report["scorers"])]
        for name in task_names:
            score = (model.get("retention") or {}).get("tasks", {}).get(name)
            if score is None:
                cells.append("-")
                continue
            metric = _primary(score["metrics"])
            cells.append(f"{metric} {score['metrics'][metric]:.3f} ±{score['stderrs'].get(metric, float('nan')):.3f}")
        table.add_row(model["label"], *cells)
    return table


def _primary(metrics: dict[str, float]) -> str:
    from loralab.eval.retention import PRIMARY_METRICS

    return next((m for m in PRIMARY_METRICS if m in metrics), next(iter(metrics)))


def main(argv: list[str]) -> int:
    """``loralab eval``; bad input raises ParamsError / DatasetError, which ``loralab.cli`` prints as one line."""
    parser = argparse.ArgumentParser(prog="loralab eval", description="Evaluate adapters or models on held-out rows.")
    parser.add_argument("models", nargs="*", help="adapter folders (runs/<run>/adapter) or full model folders")
    parser.add_argument("--base", action="store_true", help="also evaluate the bare base model")
    parser.add_argument("-f", "--params", action="append", default=[], help="YAML params file (repeatable)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="one parameter, VALUE read as YAML (repeatable), e.g. -p eval_examples 20")
    parser.add_argument("--out", default="", help="eval folder (default runs/<time>-eval under the current folder)")
    parser.add_argument("--json", action="store_true", help="print eval.json instead of a table")
    parser.add_argument("--allow-base-mismatch", action="store_true", help="load adapters onto another base (warns)")
    parser.add_argument("--harness", nargs="?", const="", default=None, metavar="TASK[,TASK]",
                        help="also run lm-evaluation-harness tasks (no value: the run's own retention_tasks)")
    parser.add_argument("--harness-limit", type=int, default=None, metavar="N",
                        help="examples per harness task (default: the run's retention_limit, else all)")
    parser.add_argument("--harness-only", action="store_true", help="skip the held-out rows: harness tasks only")
    args = parser.parse_args(argv)
    models = [Path(m).expanduser().resolve() for m in args.models]
    missing = [str(m) for m in models if not m.is_dir()]
    if missing:
        raise ParamsError(f"no such folder: {', '.join(missing)}; give adapter folders (runs/<run>/adapter).")
    if not models and not args.base:
        raise ParamsError("name adapter folders to evaluate, or --base for the bare base model.")
    overrides = {}
    for name, value in args.param:
        try:
            overrides[name] = param_value(name, value)  # '' stays text; templates as written
        except yaml.YAMLError as error:
            raise ParamsError(f"-p {name}: {value!r} is not a YAML value{yaml_problem(error)}; quote text "
                              "values, e.g. -p name \"'text'\"") from None
    if args.harness_only and args.harness is None:
        raise ParamsError("--harness-only needs --harness (the tasks to run instead of the held-out rows).")
    if args.harness:
        overrides["retention_tasks"] = args.harness
    if args.harness_limit is not None:
        if args.harness_limit <= 0:
            raise ParamsError(f"--harness-limit {args.harness_limit}: give a number of examples per task >= 1, "
                              "or leave it out to run every example.")
        overrides["retention_limit"] = args.harness_limit
    cfg = eval_config(models, args.params, overrides, need_held_out=not args.harness_only)
    if args.harness is None:
        cfg = cfg.model_copy(update={"retention_tasks": []})
    elif not cfg.retention_tasks:
        raise ParamsError("--harness without task names runs the run's own retention_tasks, and it has none: "
                          "name tasks, e.g. --harness loralab_general_knowledge (offline) or arc_easy,hellaswag.")
    from loralab.eval.prepare import prepare_run_data
    from loralab.eval.retention import check_retention_tasks

    if args.harness_only:
        check_retention_tasks(cfg.retention_tasks)
        data = None
    else:
        data = prepare_run_data(cfg)
    targets: list[Path | None] = ([None] if args.base else []) + models
    taken: set[str] = set()
    labels = [("base" if t is None else _label(t, taken)) for t in targets]
    out = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-eval"
    out.mkdir(parents=True, exist_ok=True)
    if data is not None:
        print(data.note, file=sys.stderr)
    # With --json, stdout carries the JSON alone: what the libraries print while loading goes to stderr.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        results = evaluate_models(targets, labels, cfg, data, args.allow_base_mismatch,
                                  held_out=data is not None)  # an adapter its manifest refuses: ValueError
    from loralab.eval.evaluate import write_eval_examples

    report = results_json(results, data, cfg, targets)
    (out / EVAL_FILE).write_text(json.dumps(report, indent=2, default=str))
    if data is not None:
        write_eval_examples(out / EXAMPLES_FILE, data.scored_rows, [scored for scored, _ in results])
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 160).print(results_table(report))
        for label, verdict in (report.get("retention_vs_base") or {}).items():
            print(f"{label}: {verdict}")
        print(f"eval folder: {out}")
    return 0
