"""Execute a notebook headless with papermill into a fresh run folder.

    loralab run notebooks/01_qlora_finetune.ipynb -f params/01_qlora_finetune/default.yaml
    loralab run notebooks/01_qlora_finetune.ipynb -f my.yaml -p max_steps 10 --runs-root runs

From Python (tests, sweeps)::

    from loralab.runner import run_notebook
    run_dir = run_notebook("notebooks/01_qlora_finetune.ipynb", {"max_steps": 5}, runs_root="runs")

The params file is validated before the kernel starts, so a typo fails in a second, not after the
model loaded. The run folder receives the executed notebook next to what the notebook writes
(metrics.json, adapter/, loss.png) and the notebook gets ``run_dir`` as a parameter.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import yaml

from loralab.adapters_demo import validate_demo_params
from loralab.config import read_params_file, validate_params

REPO_ROOT = Path(__file__).resolve().parents[2]
VALIDATORS = {"01_qlora_finetune": validate_params, "03_adapters": validate_demo_params}


def run_notebook(notebook: str | Path, parameters: dict[str, Any], runs_root: str | Path = "runs",
                 run_name: str | None = None, timeout_s: int = 3600, source: str = "params") -> Path:
    """Validate ``parameters``, run ``notebook`` with papermill into a new run folder, return the folder."""
    import papermill

    notebook = Path(notebook).resolve()
    from papermill.inspection import inspect_notebook

    # The notebook's own output-folder parameter (run_dir in 01, output_dir in 03) receives the run folder.
    folder_param = next((p for p in ("run_dir", "output_dir") if p in inspect_notebook(str(notebook))), None)
    validator = VALIDATORS.get(notebook.stem)
    if validator is not None:
        validator({k: v for k, v in parameters.items() if k != folder_param}, source=source)
    name = run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{notebook.stem}"
    run_dir = (Path(runs_root) / name).resolve()
    run_dir.mkdir(parents=True, exist_ok=False)
    papermill.execute_notebook(
        str(notebook),
        str(run_dir / notebook.name),
        parameters={**parameters, **({folder_param: str(run_dir)} if folder_param else {})},
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=False,
        log_output=False,
        execution_timeout=timeout_s,
    )
    return run_dir


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="loralab run", description="Run a notebook into a new run folder.")
    parser.add_argument("notebook", help="path to the notebook, e.g. notebooks/01_qlora_finetune.ipynb")
    parser.add_argument("-f", "--params", action="append", default=[], help="YAML params file (repeatable)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="one parameter, VALUE read as YAML (repeatable)")
    parser.add_argument("--runs-root", default=str(REPO_ROOT / "runs"), help="folder that holds run folders")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per notebook cell")
    args = parser.parse_args(argv)
    parameters: dict[str, Any] = {}
    for path in args.params:
        parameters.update(read_params_file(path))
    for name, value in args.param:
        parameters[name] = yaml.safe_load(value)
    source = " + ".join(args.params) or "parameters"
    try:
        run_dir = run_notebook(args.notebook, parameters, args.runs_root, timeout_s=args.timeout, source=source)
    except ValueError as error:
        print(f"error: {error}")
        return 2
    print(f"run folder: {run_dir}")
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        import json

        data = json.loads(metrics.read_text())
        keys = ("eval_score_before", "eval_score_after", "train_loss_first", "train_loss_last", "wall_time_s")
        print("  " + "  ".join(f"{k}={data.get(k)}" for k in keys))
    return 0
