"""``loralab eval``: score saved adapters, full models or the bare base on held-out rows, without training.

    loralab eval runs/<run>/adapter                           # the run's own held-out rows and scorers (manifest)
    loralab eval runs/<run>/adapter --base                    # ... and the bare base next to it
    loralab eval runs/a/adapter runs/b/adapter -p eval_dataset my_eval.jsonl -p eval_scorers "[contains, rouge_l]"
    loralab eval --base -f params/01_qlora_finetune/default.yaml --json     # the base alone, JSON for scripts

The eval settings (held-out rows, scorers, ``eval_examples``, ``max_new_tokens``, ``max_seq_length``)
come from ``-f`` params files, else from the first adapter's manifest (the params it was trained
with), then ``-p NAME VALUE`` overrides. Each adapter is checked against its base through its manifest
before it loads, on the base it was trained on (4-bit or 16-bit). Greedy decoding, the same rows and
batches as notebook 01: an adapter's scores equal the run's after-scores, the base's its before-scores.
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

from loralab.params.errors import ParamsError, debug_mode
from loralab.params.run_config import RunConfig
from loralab.params.yaml_reader import load_params_yaml, read_params_file, yaml_problem

EVAL_FILE = "eval.json"
EXAMPLES_FILE = "eval_examples.jsonl"


def _manifest_params(model_dir: Path) -> dict[str, Any]:
    from loralab.adapters.manifest import read_manifest

    manifest = read_manifest(model_dir) or {}
    return dict(manifest.get("training") or {})


def eval_config(models: list[Path], params_files: list[str], overrides: dict[str, Any]) -> RunConfig:
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
    if not cfg.has_eval:
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
                    allow_base_mismatch: bool = False) -> list:
    """Load each target in turn (None: the base), measure held-out loss and scores, free it; EvalResults."""
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.eval.evaluate import evaluate
    from loralab.train.trainer import build_eval_trainer

    results = []
    eval_dataset = to_prompt_completion(data.eval)
    for target, label in zip(targets, labels):
        model, tokenizer = _load(target, cfg, allow_base_mismatch)
        with tempfile.TemporaryDirectory(prefix="loralab-eval-") as scratch:
            trainer = build_eval_trainer(model, tokenizer, eval_dataset, cfg, output_dir=scratch)
            results.append(evaluate(model, tokenizer, data, trainer, cfg.max_new_tokens, label=label))
        del model, tokenizer, trainer
        gc.collect()
    return results


def results_json(results: list, data, cfg: RunConfig, targets: list[Path | None]) -> dict[str, Any]:
    """What ``eval.json`` holds: the settings, the held-out rows and one entry per model."""
    from loralab.adapters.manifest import dataset_sha256

    return {
        "eval_source": data.splits.source, "eval_rows": len(data.eval), "eval_rows_leaked": len(data.splits.leaked),
        "eval_examples": len(data.scored_rows), "eval_dataset_sha256": dataset_sha256(data.eval),
        "scorers": [s.name for s in data.scorers], "params": cfg.model_dump(),
        "models": [{"label": r.label, "path": str(t) if t is not None else cfg.model_name,
                    "eval_loss": r.loss, "eval_perplexity": r.perplexity, "scores": r.scores,
                    "scorer_failures": r.failures} for r, t in zip(results, targets)],
    }


def results_table(report: dict[str, Any]):
    """A rich table: one row per model, held-out loss, perplexity and each scorer's mean."""
    from rich.table import Table

    table = Table(title=f"held-out: {report['eval_source']} ({report['eval_rows']} rows, "
                        f"{report['eval_examples']} prompts scored)")
    table.add_column("model")
    table.add_column("held-out loss", justify="right")
    table.add_column("perplexity", justify="right")
    for name in report["scorers"]:
        table.add_column(name, justify="right")
    for model in report["models"]:
        cells = [f"{model['eval_loss']:.4f}", f"{model['eval_perplexity']:.2f}"]
        table.add_row(model["label"], *cells, *(f"{model['scores'][n]:.3f}" for n in report["scorers"]))
    return table


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="loralab eval", description="Evaluate adapters or models on held-out rows.")
    parser.add_argument("models", nargs="*", help="adapter folders (runs/<run>/adapter) or full model folders")
    parser.add_argument("--base", action="store_true", help="also evaluate the bare base model")
    parser.add_argument("-f", "--params", action="append", default=[], help="YAML params file (repeatable)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="one parameter, VALUE read as YAML (repeatable), e.g. -p eval_examples 20")
    parser.add_argument("--out", default="", help="eval folder (default runs/<time>-eval under the current folder)")
    parser.add_argument("--json", action="store_true", help="print eval.json instead of a table")
    parser.add_argument("--allow-base-mismatch", action="store_true", help="load adapters onto another base (warns)")
    args = parser.parse_args(argv)
    models = [Path(m).expanduser().resolve() for m in args.models]
    try:
        missing = [str(m) for m in models if not m.is_dir()]
        if missing:
            raise ParamsError(f"no such folder: {', '.join(missing)}; give adapter folders (runs/<run>/adapter).")
        if not models and not args.base:
            raise ParamsError("name adapter folders to evaluate, or --base for the bare base model.")
        overrides = {}
        for name, value in args.param:
            try:
                overrides[name] = load_params_yaml(value) if value.strip() else value  # '' stays text
            except yaml.YAMLError as error:
                raise ParamsError(f"-p {name}: {value!r} is not a YAML value{yaml_problem(error)}; quote text "
                                  "values, e.g. -p name \"'text'\"") from None
        cfg = eval_config(models, args.params, overrides)
        from loralab.eval.prepare import prepare_run_data

        data = prepare_run_data(cfg)
    except ValueError as error:  # ParamsError, DatasetError: one line saying what to fix
        if debug_mode():
            raise
        print(f"error: {error}")
        return 2
    targets: list[Path | None] = ([None] if args.base else []) + models
    taken: set[str] = set()
    labels = [("base" if t is None else _label(t, taken)) for t in targets]
    out = Path(args.out) if args.out else Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-eval"
    out.mkdir(parents=True, exist_ok=True)
    print(data.note, file=sys.stderr)
    # With --json, stdout carries the JSON alone: what the libraries print while loading goes to stderr.
    try:
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            results = evaluate_models(targets, labels, cfg, data, args.allow_base_mismatch)
    except ValueError as error:  # e.g. an adapter refused by its manifest
        if debug_mode():
            raise
        print(f"error: {error}")
        return 2
    from loralab.eval.evaluate import write_eval_examples

    report = results_json(results, data, cfg, targets)
    (out / EVAL_FILE).write_text(json.dumps(report, indent=2, default=str))
    write_eval_examples(out / EXAMPLES_FILE, data.scored_rows, results)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        from rich.console import Console

        Console(width=None if sys.stdout.isatty() else 160).print(results_table(report))
        print(f"eval folder: {out}")
    return 0
