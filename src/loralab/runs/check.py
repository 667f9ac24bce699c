"""The checks ``loralab run`` makes before the kernel starts, and ``--check``'s report of them with the planner's
memory estimate.

    loralab run 01 -f my_colab.yaml -p dataset my.jsonl --check

From Python::

    from loralab.runs.runner import prepare_run
    from loralab.runs.check import check_report
    print(check_report(prepare_run("notebooks/01_qlora_finetune.ipynb", params), params, "my.yaml", "runs"))

:func:`check_data` does what the notebook's data cell does next to its validation cell (``prepare_run_data``,
``prepare_preference_data``, ``prepare_grpo_data``) and counts the supervised tokens (``loralab.data.supervision``)
when the data is on this machine; hub data is checked by the notebook before the model loads. The estimate is
``loralab.plan``'s (torch-free) for the model and LoRA settings of the params: peak GPU memory when Unsloth trains
on a CUDA GPU, and which common GPUs that fits. An embedded model is sized from its local config.json, a local
folder from its own, a hub model only when loralab's architecture table knows its name (no network is used).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from loralab.data.sources import is_local_data_file
from loralab.data.supervision import SupervisionReport
from loralab.model.embedded import cache_dir
from loralab.params.adapters_demo import AdaptersDemoConfig
from loralab.params.errors import ParamsError
from loralab.params.grpo_config import GrpoConfig
from loralab.params.names import embedded_short_name, is_embedded
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig
from loralab.plan.architectures import Architecture, get_architecture
from loralab.plan.memory import estimate_memory, setup_for
from loralab.plan.planner import GPUS

_METHODS = {"full": "full fine-tuning", "lora": "16-bit LoRA", "qlora": "QLoRA (4-bit base)"}


@dataclass(frozen=True)
class PreparedRun:
    """What the checks before the kernel found: the run can start (``loralab run --check`` stops here)."""

    notebook: Path  # absolute
    output_param: str | None  # the parameter that receives the run folder (run_dir), or None
    config: BaseModel | None  # the validated params (None: a notebook without a validator)
    resume_dir: Path | None  # the unfinished run folder this run would continue; None: a new folder
    supervision: SupervisionReport | None = None  # the answer tokens counted before the kernel, if they were

    @property
    def resolved(self) -> dict[str, Any] | None:
        """The validated params as a dict (what loralab_run.json records), None without a validator."""
        return None if self.config is None else self.config.model_dump()


def is_local(name: str) -> bool:
    """True for data or a model on this machine: embedded names, data file paths (.jsonl, .csv, .parquet...),
    existing paths."""
    return is_embedded(name) or is_local_data_file(name) or Path(name).expanduser().exists()


def data_checked_here(cfg: RunConfig) -> bool:
    """True when the training and held-out data are on this machine, so ``loralab run`` reads every row
    before the kernel starts; hub datasets are checked by the notebook before the model loads."""
    return is_local(cfg.dataset) and (not cfg.eval_dataset or is_local(cfg.eval_dataset))


def _architecture(model_name: str, notebook_dir: Path) -> Architecture:
    """The planner's architecture for ``model_name``; ValueError with the reason when there is none."""
    if is_embedded(model_name):
        folder = cache_dir() / "models" / embedded_short_name(model_name)
        if (folder / "config.json").is_file():
            return replace(get_architecture(str(folder)), name=model_name)
        try:
            return get_architecture(model_name)  # the real embedded model is in the table by name
        except ValueError:
            raise ValueError(f"{model_name} is not built on this machine yet (python -m loralab.model builds "
                             "it), so its config.json is not there to read") from None
    folder = Path(model_name).expanduser()
    folder = folder if folder.is_absolute() else notebook_dir / folder
    if folder.is_dir():
        return get_architecture(str(folder))
    try:
        return get_architecture(model_name)
    except ValueError:
        raise ValueError(f"loralab's architecture table does not know {model_name!r} and --check reads no "
                         "config.json from the hub; run loralab plan FOLDER --gpu-gb N on a downloaded copy "
                         "(a folder with config.json)") from None


def _count(weights: int) -> str:
    """1.54B, 3.2M: a weight count as people say it."""
    return f"{weights / 1e9:.2f}B" if weights >= 1e9 else f"{weights / 1e6:.1f}M"


def _plan_name(model_name: str, arch: Architecture) -> str:
    """What to give ``loralab plan`` for this model: its name, or the folder of the config.json it was sized from."""
    try:
        get_architecture(model_name)
    except ValueError:
        return str(Path(arch.source).parent) if arch.source.endswith("config.json") else model_name
    return model_name


def memory_lines(config: BaseModel | None, notebook_dir: Path) -> list[str]:
    """The planner's estimate for the params' model and LoRA settings, or one line saying why there is none."""
    cfg = config.train_config() if isinstance(config, AdaptersDemoConfig) else config
    if not isinstance(cfg, RunConfig):
        return ["no estimate: this notebook trains no model from its params"]
    method = "full" if cfg.full_finetuning else "qlora" if cfg.load_in_4bit else "lora"
    objective = "dpo" if isinstance(cfg, PreferenceConfig) else "grpo" if isinstance(cfg, GrpoConfig) else "sft"
    targets = cfg.target_modules if isinstance(cfg.target_modules, str) else tuple(cfg.target_modules)
    batch, seq, grpo = cfg.per_device_train_batch_size, cfg.max_seq_length, {}
    if isinstance(cfg, GrpoConfig):  # prompts of a micro-step, the prompt's share of max_seq_length
        batch = max(1, cfg.per_device_train_batch_size // cfg.num_generations)
        seq = max(1, cfg.max_seq_length - cfg.max_completion_length)
        grpo = {"generations": cfg.num_generations, "completion": cfg.max_completion_length,
                "reference_pass": cfg.beta > 0, "engine_gb": 0.0}
    try:
        arch = _architecture(cfg.model_name, notebook_dir)
        estimate = estimate_memory(arch, setup_for(
            "unsloth", method=method, batch=batch, seq=seq, r=cfg.lora_r,
            targets=targets, gradient_checkpointing="offload" if cfg.use_gradient_checkpointing else "none",
            objective=objective, dora=cfg.use_dora and not cfg.full_finetuning, **grpo))
    except ValueError as error:
        return [f"no estimate: {' '.join(str(error).split())}"]
    what = "pairs" if objective == "dpo" else "rows"
    shape = (f"{batch} prompt{'s' if batch > 1 else ''} x {grpo['generations']} completions of ({seq} + "
             f"{grpo['completion']}) tokens, plain generation" if grpo else f"{batch} {what} x {seq} tokens")
    lines = [(f"~{estimate.total_gib:.1f} GiB peak per GPU: {_METHODS[method]} of {cfg.model_name} "
              f"({_count(arch.param_count())} weights), {shape}, r={cfg.lora_r}{' DoRA' if cfg.use_dora else ''} "
              f"on {cfg.target_modules}, Unsloth on a CUDA GPU")]
    fits = [name for name, gib in GPUS.items() if estimate.total_gib <= gib]
    lines.append(f"fits {', '.join(fits)}" if fits else f"fits none of {', '.join(GPUS)}: lower "
                 "per_device_train_batch_size or max_seq_length, or use QLoRA")
    if grpo and cfg.use_vllm != "off":
        lines.append("with vLLM (use_vllm: on, or auto on a GPU that has it) the engine reserves half the GPU "
                     "instead of the KV cache counted here: add --vllm below")
    if isinstance(cfg, PreferenceConfig) and cfg.method != "dpo":
        lines.append(f"sized as DPO (a reference pass on chosen + rejected rows): an upper bound for {cfg.method}")
    if cfg.world_size > 1:
        lines.append(f"per process with a full copy of the model; {cfg.parallel_strategy} over {cfg.world_size} "
                     f"processes: loralab plan MODEL --gpus {cfg.world_size} --strategy {cfg.parallel_strategy}")
    extra = f" --objective {objective}" if objective != "sft" else ""
    if grpo:
        extra += f" --generations {grpo['generations']} --completion-length {grpo['completion']}"
        extra += f" --beta {cfg.beta:g}" if cfg.beta else ""
    extra += (" --target-modules attention" if targets == "attention" else "") + (" --dora" if cfg.use_dora else "")
    lines.append(f"where it goes: loralab plan {_plan_name(cfg.model_name, arch)} --gpu-gb N --max-seq-length {seq} "
                 f"--per-device-train-batch-size {batch} --lora-r {cfg.lora_r}{extra}")
    return lines


def check_data(config: BaseModel, source: str) -> SupervisionReport | None:
    """What the notebook's data cell checks: with the data on this machine every row, the held-out split, the
    scorers (rewards) tried on a row, the retention tasks, then the answer tokens left after ``max_seq_length``;
    with hub data the scorers, rewards and retention tasks only. ParamsError (``source: ...``) for a problem;
    the supervision report when the tokens were counted."""
    if not isinstance(config, RunConfig):
        return None
    try:
        if isinstance(config, GrpoConfig):  # completions are generated: no answers to count
            from loralab.eval.grpo_data import prepare_grpo_data
            from loralab.eval.rewards import reward_functions

            if data_checked_here(config):
                prepare_grpo_data(config)
            else:
                reward_functions(config.rewards)
            return None
        if not data_checked_here(config):
            from loralab.eval.retention import check_retention_tasks
            from loralab.eval.scorers import parse_scorers

            parse_scorers(config.eval_scorers)
            check_retention_tasks(config.retention_tasks)
            return None
        from loralab.data.supervision import check_preference_supervision, check_run_supervision
        from loralab.eval.prepare import prepare_preference_data, prepare_run_data

        if isinstance(config, PreferenceConfig):
            return check_preference_supervision(config, prepare_preference_data(config).train)
        return check_run_supervision(config, prepare_run_data(config).train)
    except ValueError as error:  # ParamsError, DatasetError, SupervisionError
        raise ParamsError(f"{source}: {error}") from None


def check_report(prepared: PreparedRun, parameters: dict[str, Any], source: str, runs_root: str | Path) -> str:
    """What ``loralab run --check`` prints: what was checked, the memory estimate, and that nothing ran."""
    notebook, config = prepared.notebook, prepared.config
    rows = [("names", f"{len(parameters)} given, each one the notebook's parameters cell has" if parameters
             else "none given: the notebook's own defaults")]
    if config is None:
        rows.append(("values", f"{notebook.stem} has no params model: its own cells check them when it runs"))
    elif isinstance(config, RunConfig):
        checked = "types, ranges, combinations; this machine: optimizer, 4-bit support, trackers, processes"
        rows.append(("values", f"valid for {notebook.stem} ({checked})"))
    else:
        rows.append(("values", f"valid for {notebook.stem} (types, ranges, combinations)"))
    if isinstance(config, RunConfig):
        if data_checked_here(config):
            held_out = (f" and of the held-out {config.eval_dataset}" if config.eval_dataset
                        else f", its held-out split ({config.eval_fraction:g} of the rows)" if config.eval_fraction
                        else "")
            scorers = f"; scorers {config.eval_scorers} tried on a held-out row" if config.eval_scorers else ""
            mapped = (f", each mapped by prompt_template {config.prompt_template!r} and "
                      + " and ".join(f"{name} {column!r}" for name, column in config.answer_columns().items())
                      if config.prompt_template else "")
            if isinstance(config, GrpoConfig):
                scorers = f"; rewards {config.rewards} parsed (each is tried on a real completion before training)"
            rows.append(("data", f"every row of {config.dataset}{held_out} read and checked{mapped}{scorers}"))
            if not isinstance(config, GrpoConfig):  # GRPO's completions are generated: no answers to supervise
                report = prepared.supervision
                rows.append(("answers", report.message if report is not None else f"{config.model_name}'s tokenizer "
                             "is not on this machine: the notebook counts them before training"))
        else:
            hub = f"{config.dataset} is on the hub: the notebook checks its rows before the model loads (not here)"
            rows.append(("data", hub))
        if config.retention_tasks:
            rows.append(("retention", f"tasks {config.retention_tasks} found"))
    estimate = memory_lines(config, notebook.parent)
    rows.append(("memory", estimate[0]))
    rows += [("", line) for line in estimate[1:]]
    where = (f"running would continue the unfinished run {prepared.resume_dir}" if prepared.resume_dir
             else f"running would make a new one under {runs_root}")
    rows.append(("run folder", f"none created; {where}"))
    width = max(len(label) for label, _ in rows)
    lines = [f"checked {notebook.name} with {source}: nothing was run, no model loaded"]
    lines += [f"  {label:<{width}}  {text}" for label, text in rows]
    lines.append("ok: the same command without --check runs it")
    return "\n".join(lines)


def print_check_report(prepared: PreparedRun, parameters: dict[str, Any], source: str, runs_root: str | Path) -> None:
    """Print :func:`check_report` (``loralab run --check``)."""
    print(check_report(prepared, parameters, source, runs_root))
