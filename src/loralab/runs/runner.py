"""Execute a notebook headless with papermill into a fresh run folder.

    loralab run notebooks/01_qlora_finetune.ipynb -f params/01_qlora_finetune/default.yaml
    loralab run notebooks/01_qlora_finetune.ipynb -f my.yaml -p max_steps 10 --runs-root runs
    loralab run 01 -f smoke.yaml          # a shipped notebook by number, a shipped params file by name
    loralab run 01 -f colab_t4_json.yaml --check   # only the checks below and a memory estimate: no folder, no kernel

From Python (tests, sweeps)::

    from loralab.runs.runner import run_notebook
    run_dir = run_notebook("notebooks/01_qlora_finetune.ipynb", {"max_steps": 5}, runs_root="runs")

The notebook is a path or a shipped notebook's number or name (``01``, ``01_qlora_finetune``); a
params file that is not in the current folder is looked up in the shipped params (``smoke.yaml`` for
notebook 01 is ``params/01_qlora_finetune/smoke.yaml``; see ``loralab.runs.shipped``). Run folders go
to ``--runs-root``, by default ``./runs`` (the repository's ``runs/`` anywhere inside a checkout).

The params are checked before the kernel starts, so a typo fails in a second, not after the model loaded
(:func:`prepare_run`): the names, then the notebook's own validation (``loralab.params.notebook.validated``)
and, for data on this machine, its data cell's checks (``loralab.runs.check.check_data``). ``--check`` stops
there and prints what was checked with the planner's memory estimate. Then papermill runs the notebook in
the folder the command ran from, so a relative path means the same to the checks and to the kernel. The run
folder receives the executed notebook next to what the notebook writes (metrics.json, adapter/, loss.png)
and the notebook gets ``run_dir`` as a parameter; the terminal hears each section start
(``loralab.runs.sections``: papermill's own engine, its ``cell_start`` hook wrapped).

Re-running the same command resumes: for a notebook with a ``resume`` parameter (01) that is on,
``loralab run`` reuses the newest unfinished run folder (no ``metrics.json``, not running now) whose
recorded params (``loralab_run.json``, written at start) equal the new ones, and the notebook continues
from that folder's newest complete checkpoint. ``--fresh`` always starts a new folder.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from loralab.data.supervision import SupervisionReport
from loralab.params.contracts import contract_of, parameters_cell
from loralab.params.errors import ParamsError, RunFailed
from loralab.params.notebook import PARAMS_FILE, validated
from loralab.params.schema import unknown_name
from loralab.params.yaml_reader import param_value, read_params_file, yaml_problem
from loralab.runs.check import PreparedRun, check_data, print_check_report
from loralab.runs.record import find_unfinished_run, hold_run_lock, write_run_record
from loralab.runs.shipped import find_params_file, notebook_argument, shipped_notebooks, working_folder


def check_notebook(notebook: Path) -> None:
    """ParamsError unless ``notebook`` is an existing .ipynb file."""
    if notebook.suffix != ".ipynb":
        hint = " (a params file: pass it with -f after the notebook)" if notebook.suffix in (".yaml", ".yml") else ""
        raise ParamsError(f"{notebook}: the first argument must be a notebook (.ipynb){hint}, e.g. "
                          "loralab run notebooks/01_qlora_finetune.ipynb -f my.yaml")
    if not notebook.is_file():
        names = ", ".join(nb.stem for nb in shipped_notebooks())
        raise ParamsError(f"notebook {notebook} does not exist; give a path to a .ipynb file or a shipped notebook's "
                          f"number or name ({names}), e.g. loralab run 01.")


def check_runs_root(runs_root: Path) -> None:
    """ParamsError unless ``runs_root`` is (or can become) a folder this user can write to."""
    existing = next((p for p in (runs_root, *runs_root.parents) if p.exists()), None)
    if runs_root.exists() and not runs_root.is_dir():
        raise ParamsError(f"--runs-root {runs_root} is a file, not a folder; give a folder (it is created if missing).")
    if existing is not None and not existing.is_dir():
        raise ParamsError(f"--runs-root {runs_root}: {existing} is a file, so no folder can be made there.")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ParamsError(f"--runs-root {runs_root}: {existing} is not writable for this user; choose a folder "
                          "you can write to.")


def check_names(notebook: Path, origins: dict[str, dict[str, Any]]) -> None:
    """Unknown parameter names, blamed on the file or ``-p`` that gave them (papermill itself only warns): a
    notebook with a contract takes every field of its schema (and ``params_file``), any other notebook the names
    in its parameters cell."""
    from papermill.inspection import inspect_notebook

    contract = contract_of(notebook)
    known = ([PARAMS_FILE, *contract.schema.model_fields] if contract is not None
             else list(inspect_notebook(str(notebook))))
    for origin, values in origins.items():
        for name in values:
            if name not in known:
                problem = unknown_name(str(name), known) if known else takes_no_parameters(notebook, name)
                raise ParamsError(f"{origin}: {problem}")


def takes_no_parameters(notebook: Path, name: object) -> str:
    """What to say when a notebook without a ``parameters`` cell is given a parameter."""
    return (f"{notebook.name} takes no parameters (no cell is tagged 'parameters'), so {str(name)!r} cannot be "
            "set: run it without -f and -p, or tag the cell that assigns its settings 'parameters' (Jupyter: "
            "View > Cell Toolbar > Tags) so that papermill can set them.")


def folder_param(notebook: Path) -> str | None:
    """The notebook's output-folder parameter, which receives the run folder (None if it has none).

    Its contract says; a notebook without one gets the run folder in ``run_dir`` if it has that parameter.
    """
    from papermill.inspection import inspect_notebook

    contract = contract_of(notebook)
    if contract is not None:
        return contract.folder_param
    return "run_dir" if "run_dir" in inspect_notebook(str(notebook)) else None


def validated_config(notebook: Path, params: dict[str, Any],
                     source: str = "params") -> tuple[BaseModel | None, SupervisionReport | None]:
    """(config, supervision report): ``params`` (without the output-folder parameter) checked as ``notebook``'s
    validation and data cells will check them; (None, None) for a notebook without a contract, whose names only
    are checked against its parameters cell. A ``ParamsError`` says what to fix."""
    contract = contract_of(notebook)
    if contract is None:
        check_names(notebook, {source: params})
        return None, None
    if params.get(PARAMS_FILE):  # as the notebook's validation cell reads it: the file's values win
        from loralab.runs.notebook_params import params_file_path

        named = params_file_path(str(params[PARAMS_FILE]), contract.schema)
        params = {k: v for k, v in params.items() if k != PARAMS_FILE} | read_params_file(named)
    config = validated(contract.schema, params, source, packages=False)
    return config, check_data(config, source)


def validate_for_notebook(notebook: Path, params: dict[str, Any], source: str = "params") -> dict[str, Any] | None:
    """:func:`validated_config`'s config as a dict (a sweep's check of each run); None without a contract."""
    config, _ = validated_config(notebook, params, source)
    return None if config is None else config.model_dump()


def prepare_run(notebook: str | Path, parameters: dict[str, Any], runs_root: str | Path = "runs",
                run_name: str | None = None, source: str = "params", fresh: bool = False) -> PreparedRun:
    """Every check :func:`run_notebook` makes before it creates a folder; writes nothing, starts nothing.

    The notebook, the runs folder, the parameters (names, values, this machine, local data, scorers,
    retention tasks), and which unfinished run the run would resume. A ``ParamsError`` says what to fix.
    """
    notebook = Path(notebook).resolve()
    check_notebook(notebook)
    check_runs_root(Path(runs_root))
    output_param = folder_param(notebook)
    if output_param in parameters:
        raise ParamsError(f"{source}: {output_param} is chosen by loralab run (a new folder under --runs-root, or "
                          f"the unfinished run it resumes); remove {output_param}, and use --runs-root DIR to say "
                          "where run folders go (plain papermill honours it).")
    config, supervision = validated_config(notebook, parameters, source)
    resolved = None if config is None else config.model_dump()
    resume_dir = None
    if resolved and resolved.get("resume") and not fresh and run_name is None:
        resume_dir = find_unfinished_run(runs_root, notebook, resolved)
    return PreparedRun(notebook, output_param, config, resume_dir, supervision)


def run_notebook(notebook: str | Path, parameters: dict[str, Any], runs_root: str | Path = "runs",
                 run_name: str | None = None, timeout_s: int = 3600, source: str = "params",
                 fresh: bool = False, command: list[str] | None = None,
                 params_files: list[str] | None = None) -> Path:
    """Validate ``parameters``, run ``notebook`` with papermill into a run folder, return the folder.

    The folder is new, except that without ``fresh`` (and without ``run_name``) an unfinished folder
    of the same notebook and params is reused when the params have ``resume`` on.
    """
    prepared = prepare_run(notebook, parameters, runs_root, run_name=run_name, source=source, fresh=fresh)
    notebook, resolved, run_dir = prepared.notebook, prepared.resolved, prepared.resume_dir
    if run_dir is not None:
        print(f"resuming the unfinished run in {run_dir} (same notebook and params; --fresh starts a new one)")
    else:
        run_dir = _new_run_dir(Path(runs_root), run_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{notebook.stem}",
                               numbered=run_name is None)
    with hold_run_lock(run_dir):
        write_run_record(run_dir, notebook, parameters, resolved, command=command, params_files=params_files)
        _execute(notebook, run_dir, parameters, prepared.output_param, timeout_s)
    return run_dir


def _new_run_dir(runs_root: Path, name: str, numbered: bool) -> Path:
    """Create ``runs_root/name``; when ``numbered``, ``name-2``, ``name-3``... if it exists (same second)."""
    runs_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000 if numbered else 2):
        path = (runs_root / (name if attempt == 1 else f"{name}-{attempt}")).resolve()
        try:
            path.mkdir()
            return path
        except FileExistsError:
            if not numbered:
                raise
    raise FileExistsError(f"{runs_root / name}: too many run folders with this name")


# Headless, the loading and tokenizing bars of transformers and datasets are noise on stderr; the training
# progress goes to the terminal as lines (loralab.train.progress).
NO_PROGRESS_BARS = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}


def _not_in_the_cell(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Passed unknown parameter")


def _execute(notebook: Path, run_dir: Path, parameters: dict[str, Any], folder_param: str | None,
             timeout_s: int) -> None:
    """papermill, in the folder the command ran from; the terminal hears each section start."""
    import papermill

    from loralab.runs.sections import SECTION_ENGINE, register_section_engine

    register_section_engine()  # the terminal hears each section start; the executed notebook is papermill's own
    # The schema's fields outside the parameters cell are parameters too (validated above): no papermill warning.
    quiet = logging.getLogger("papermill")
    quiet.addFilter(_not_in_the_cell)
    saved = {name: os.environ.get(name) for name in NO_PROGRESS_BARS}
    os.environ.update(NO_PROGRESS_BARS)  # the kernel inherits them: a run folder's notebook keeps no bar
    try:
        papermill.execute_notebook(str(notebook), str(run_dir / notebook.name),
                                   parameters={**parameters, **({folder_param: str(run_dir)} if folder_param else {})},
                                   engine_name=SECTION_ENGINE, kernel_name="python3", cwd=os.getcwd(),
                                   progress_bar=False, log_output=False, execution_timeout=timeout_s)
    except papermill.PapermillExecutionError as error:  # the kernel's error, said once, with where to look
        raise RunFailed(error.ename, error.evalue, error.exec_count, str(run_dir / notebook.name)) from None
    finally:
        quiet.removeFilter(_not_in_the_cell)
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _join(notebook: Path, parameters: dict[str, Any], source: str, node_rank: int) -> int:
    """``--node-rank R`` (R >= 1): validate the same params, then run this machine's training workers."""
    from loralab.train.workers import join_as_node

    contract = contract_of(notebook)
    if contract is None or not contract.several_machines:
        raise ParamsError(f"--node-rank: {notebook.name} does not train on several machines (notebook 01 does).")
    cfg, _ = validated_config(notebook, parameters, source)
    join_as_node(cfg, node_rank)
    print(f"node {node_rank}: training done (machine 0 writes the run folder)")
    return 0


def main(argv: list[str]) -> int:
    """``loralab run``; bad input raises ParamsError / DatasetError (a notebook that failed: RunFailed), which
    ``loralab.cli`` prints as one ``error: ...`` line with exit code 2."""
    parser = argparse.ArgumentParser(prog="loralab run", description="Run a notebook into a new run folder.")
    parser.add_argument("notebook", help="path to the notebook, or a shipped one's number or name, e.g. 01")
    parser.add_argument("-f", "--params", action="append", default=[],
                        help="YAML params file (repeatable); one not found here is looked up in the shipped params")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="one parameter, VALUE read as YAML (repeatable)")
    parser.add_argument("--runs-root", default=str(working_folder("runs")),
                        help="folder that holds run folders (default ./runs; the repository's inside a checkout)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per notebook cell")
    parser.add_argument("--fresh", action="store_true",
                        help="always start a new run folder (default: resume an unfinished run of the same params)")
    parser.add_argument("--nproc-per-node", type=int, default=None, metavar="N",
                        help="training processes on this machine (the num_processes param; DDP under torchrun)")
    parser.add_argument("--nnodes", type=int, default=None, metavar="M", help="machines in the run (num_nodes)")
    parser.add_argument("--strategy", choices=("ddp", "fsdp"), default=None,
                        help="ddp (a full copy per device) or fsdp (the model sharded over GPUs): parallel_strategy")
    parser.add_argument("--node-rank", type=int, default=0, metavar="R",
                        help="this machine's number: 0 runs the notebook, 1..M-1 only train (workers)")
    parser.add_argument("--master-addr", default=None, metavar="HOST", help="machine 0's address (master_addr)")
    parser.add_argument("--master-port", type=int, default=None, metavar="PORT", help="machine 0's port (master_port)")
    parser.add_argument("--check", action="store_true",
                        help="only check: params, names, data files, held-out split, scorers, this machine, and the "
                             "memory estimate; creates no run folder, starts no kernel, loads no model")
    parser.add_argument("--help-notebook", action="store_true",
                        help="list the notebook's parameters (default and help line of each, grouped) and stop")
    args = parser.parse_args(argv)
    if args.help_notebook:
        print(notebook_help(notebook_argument(args.notebook)))
        return 0
    run_dir = _checked_or_run(args, argv)
    if run_dir is None:
        return 0
    print(f"run folder: {run_dir}")
    metrics = run_dir / "metrics.json"
    if metrics.is_file():
        import json

        data = json.loads(metrics.read_text())
        keys = ("eval_score_before", "eval_score_after", "eval_loss_before", "eval_loss_after",
                "preference_accuracy_before", "preference_accuracy_after", "train_loss_first", "train_loss_last",
                "wall_time_s")
        print("  " + "  ".join(f"{k}={data[k]}" for k in keys if data.get(k) is not None))
    return 0


def notebook_help(notebook: Path) -> str:
    """``loralab run NOTEBOOK --help-notebook``: the parameters the notebook takes, as its contract lays them out
    (``name = default  # help line``, grouped); a notebook without a contract: what papermill reads."""
    from papermill.inspection import inspect_notebook

    check_notebook(notebook)
    contract = contract_of(notebook)
    if contract is not None:
        return (f"{notebook.name} (contract {contract.name}; set any of these with -p NAME VALUE or a params "
                f"file):\n\n{parameters_cell(contract)}")
    found = inspect_notebook(str(notebook))
    if not found:
        return f"{notebook.name} takes no parameters (no cell is tagged 'parameters')."
    lines = [f"{name} = {info['default']}  # {info['help']}".rstrip(" #") for name, info in found.items()]
    return f"{notebook.name} (no loralab contract; its parameters cell):\n\n" + "\n".join(lines)


def _checked_or_run(args: argparse.Namespace, argv: list[str]) -> Path | None:
    """Read -f / -p / launch options, check them, then run (the run folder) or, with --check, report (None)."""
    notebook = notebook_argument(args.notebook)
    check_notebook(notebook)
    given, args.params = args.params, [find_params_file(path, notebook) for path in args.params]
    for name, path in zip(given, args.params):
        if name != path:
            print(f"-f {name}: not in this folder, using the shipped {path}")
    origins: dict[str, dict[str, Any]] = {path: read_params_file(path) for path in args.params}
    overrides: dict[str, Any] = {}
    for name, value in args.param:
        try:
            # YAML without 1.1's booleans (2e-4 is a number); an empty value stays the empty text
            overrides[name] = param_value(name, value)  # '' stays text; templates as written
        except yaml.YAMLError as error:
            raise ParamsError(f"-p {name}: {value!r} is not a YAML value{yaml_problem(error)}; quote text "
                              "values, e.g. -p name \"'text'\"") from None
    launch = {name: value for name, value in (("num_processes", args.nproc_per_node), ("num_nodes", args.nnodes),
                                              ("parallel_strategy", args.strategy), ("master_addr", args.master_addr),
                                              ("master_port", args.master_port)) if value is not None}
    origins.update({f"-p {name}": {name: value} for name, value in overrides.items()})
    origins.update({f"--{name}": {name: value} for name, value in launch.items()})
    check_names(notebook, origins)
    parameters = {k: v for values in origins.values() for k, v in values.items()}
    source = " + ".join([*args.params, *(f"-p {n}" for n in overrides)]) or "parameters"
    if args.check and args.node_rank:
        raise ParamsError("--check checks machine 0's run (the one that runs the notebook): leave out --node-rank.")
    if args.node_rank:  # another machine of a several-machine run: its workers, no notebook, no run folder
        _join(notebook, parameters, source, args.node_rank)
        return None
    if parameters.get("master_port") and (parameters.get("num_processes", 1) > 1 or
                                          parameters.get("num_nodes", 1) > 1):
        from loralab.train.workers import check_port_free

        # machine 0 listens there: said before the kernel starts, not after the model loaded
        check_port_free(str(parameters.get("master_addr", "127.0.0.1")), int(parameters["master_port"]))
    if args.check:  # the checks run_notebook makes first (prepare_run), then a report: no folder, no kernel
        print_check_report(prepare_run(notebook, parameters, args.runs_root, source=source, fresh=args.fresh),
                           parameters, source, args.runs_root)
        return None
    return run_notebook(notebook, parameters, args.runs_root, timeout_s=args.timeout, source=source,
                        fresh=args.fresh, command=["loralab", "run", *argv], params_files=args.params)
