"""One contract per notebook: its schema, its parameters cell, its output folder and results file.

    from loralab.params.contracts import contract_of, parameters_cell
    contract = contract_of("my_copy_of_01.ipynb")     # found by the notebook's metadata, whatever its file name
    contract.schema, contract.folder_param              # RunConfig, "run_dir"
    parameters_cell(contract)                           # the parameters cell's source, from the schema

The schema is the only place a default and its help line live: each shipped notebook's parameters
cell is rendered from it (``python -m loralab.runs.notebook_cells`` rewrites the cells; a test checks
that they are equal), grouped as ``cell`` lists the names, the knobs a reader changes first at the
top. A notebook names its contract in its metadata (``"loralab": {"contract": "01_qlora_finetune"}``),
which every copy keeps, so ``loralab run``, resume matching, the several-machine launcher and sweeps
treat ``my_finetune.ipynb`` as the notebook it was copied from. A contract's name is its shipped
notebook's file stem (the folder of its shipped params files).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loralab.params.adapters_demo import AdaptersDemoConfig
from loralab.params.grpo_config import GrpoConfig
from loralab.params.lora_basics import LoraBasicsConfig
from loralab.params.notebook import PARAMS_FILE
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig


class SweepReportConfig(BaseModel):
    """Notebook 02's parameter: which sweep it reports (the description is the help line)."""

    model_config = ConfigDict(extra="forbid")

    sweep_dir: str = Field("", description="a folder written by loralab sweep, e.g. sweeps/rank; empty picks the "
                           "newest under sweeps/")


METADATA_KEY = "loralab"  # notebook metadata: {"loralab": {"contract": "<name>"}}


@dataclass(frozen=True)
class NotebookContract:
    """What a notebook takes and writes."""

    name: str  # the shipped notebook's file stem, e.g. "01_qlora_finetune"
    schema: type[BaseModel]
    cell: tuple[tuple[str, tuple[str, ...]], ...]  # the parameters, grouped: (heading, names); the first has none
    folder_param: str | None = None  # receives the run folder from loralab run
    results_file: str | None = "metrics.json"  # written last: a run without it is unfinished
    several_machines: bool = False  # trains under torchrun on several machines (--node-rank)
    # The knobs a reader changes, (name, short comment), when the parameters cell shows only those (after
    # params_file); every other field keeps its schema default and is set with -p, a params file or a sweep.
    knobs: tuple[tuple[str, str], ...] = ()
    params_file: bool = False  # the cell opens with params_file (a cell of knobs always does)

    @property
    def takes_params_file(self) -> bool:
        return self.params_file or bool(self.knobs)

    @property
    def names(self) -> list[str]:
        """The parameters in the notebook's parameters cell, in its order (``params_file`` aside)."""
        if self.knobs:
            return [name for name, _ in self.knobs]
        return [name for _, names in self.cell for name in names]

    @property
    def all_names(self) -> list[str]:
        """Every parameter in the groups' order: the parameters cell's first."""
        cell = self.names
        return cell + [name for _, names in self.cell for name in names if name not in cell]


_RUN_CELL = (
    ("", ("model_name", "load_in_4bit", "dataset", "eval_dataset", "lora_r", "lora_alpha", "target_modules",
          "max_steps", "learning_rate", "per_device_train_batch_size", "max_seq_length", "eval_scorers")),
    ("model and LoRA", ("trust_remote_code", "full_finetuning", "lora_dropout", "use_gradient_checkpointing")),
    ("LoRA variant (docs/lora-variants.md)", ("use_rslora", "use_dora", "init_lora_weights", "loraplus_lr_ratio")),
    ("data", ("dataset_split", "overlong_rows", "packing")),
    ("your columns (a file not in a chat format)", ("prompt_template", "answer_column", "system_prompt")),
    ("evaluation", ("eval_split", "eval_fraction", "eval_examples", "eval_steps", "early_stopping_patience",
                    "max_new_tokens", "show_examples")),
    ("training", ("gradient_accumulation_steps", "warmup_steps", "lr_scheduler_type", "weight_decay", "optim",
                  "seed", "logging_steps")),
    ("checkpoints", ("save_steps", "save_total_limit", "resume")),
    ("several devices or machines", ("num_processes", "num_nodes", "parallel_strategy", "master_addr",
                                     "master_port")),
    ("tracking", ("report_to",)),
    ("retention (what the adapter cost)", ("retention_tasks", "retention_limit")),
    ("output", ("run_dir",)),
)
_PREFERENCE_CELL = (
    ("", ("model_name", "load_in_4bit", "method", "beta", "dataset", "eval_dataset", "sft_adapter", "lora_r",
          "lora_alpha", "target_modules", "max_steps", "learning_rate", "per_device_train_batch_size",
          "max_seq_length", "eval_scorers")),
    ("model and LoRA", ("lora_dropout", "use_gradient_checkpointing", "loss_type")),
    ("LoRA variant (docs/lora-variants.md)", ("use_rslora", "use_dora", "init_lora_weights", "loraplus_lr_ratio")),
    ("data", ("dataset_split",)),
    ("your columns (a file not in a chat format)", ("prompt_template", "chosen_column", "rejected_column",
                                                    "system_prompt")),
    ("evaluation", ("eval_split", "eval_examples", "max_new_tokens", "show_examples")),
    ("training", ("gradient_accumulation_steps", "warmup_steps", "lr_scheduler_type", "optim", "seed",
                  "logging_steps")),
    ("checkpoints", ("save_steps", "save_total_limit", "resume")),
    ("tracking", ("report_to",)),
    ("retention (what the adapter cost)", ("retention_tasks", "retention_limit")),
    ("output", ("run_dir",)),
)
_GRPO_CELL = (
    ("", ("model_name", "load_in_4bit", "dataset", "eval_dataset", "rewards", "reward_weights", "sft_adapter",
          "num_generations", "max_completion_length", "beta", "lora_r", "lora_alpha", "max_steps", "learning_rate",
          "per_device_train_batch_size")),
    ("GRPO", ("temperature", "loss_type", "scale_rewards", "completions_every", "use_vllm")),
    ("model and LoRA", ("target_modules", "max_seq_length", "lora_dropout", "use_gradient_checkpointing")),
    ("data", ("dataset_split", "dataset_config", "prompt_column", "reference_column")),
    ("evaluation", ("eval_split", "eval_examples", "max_new_tokens", "show_examples")),
    ("training", ("gradient_accumulation_steps", "warmup_steps", "lr_scheduler_type", "optim", "seed",
                  "logging_steps")),
    ("checkpoints", ("save_steps", "save_total_limit", "resume")),
    ("tracking", ("report_to",)),
    ("output", ("run_dir",)),
)
_ADAPTERS_CELL = (
    ("", ("model_name", "adapter_dirs", "load_in_4bit", "max_steps", "questions")),
    ("training the two adapters", ("per_device_train_batch_size", "learning_rate", "lora_r", "lora_alpha",
                                   "max_seq_length", "seed")),
    ("answers", ("max_new_tokens",)),
    ("merge", ("merge_adapter_name", "merge_into", "merge_parity_prompts", "merge_parity_tokens")),
    ("GGUF export", ("gguf_type", "gguf_lora", "gguf_score_questions")),
    ("output", ("run_dir",)),
)

PARAMS_FILE_COMMENT = "a params file whose values replace this cell's: a shipped one (e.g. \"colab_t4.yaml\") or yours"
_RUN_KNOBS = (
    ("model_name", "embedded/<name>, a local model folder or a hub model id (org/name)"),
    ("load_in_4bit", "QLoRA: the frozen base in 4-bit NF4; False: a 16-bit base (plain LoRA)"),
    ("dataset", "embedded/<name>, a .jsonl/.csv/.parquet file or a hub dataset id"),
    ("eval_dataset", "held-out rows, the same kinds; \"\": hold out eval_fraction of dataset"),
    ("eval_fraction", "with eval_dataset \"\": the share of dataset held out (seeded)"),
    ("eval_scorers", "judges of held-out replies, e.g. [\"contains\", \"rouge_l\"]; None: the task's own"),
    ("lora_r", "rank r: r*(d+k) trainable weights per adapted layer"),
    ("lora_alpha", "the update B @ A is scaled by lora_alpha / lora_r"),
    ("target_modules", "\"all-linear\", \"attention\" or names such as [\"q_proj\", \"v_proj\"]"),
    ("max_steps", "optimizer steps"),
    ("learning_rate", "peak learning rate (LoRA: 1e-4 to 3e-4 is usual)"),
    ("per_device_train_batch_size", "rows per step on each device"),
    ("max_seq_length", "tokens per row; longer rows are cut"),
    ("run_dir", "this run's folder; \"\": runs/<time>-<model>"),
)
_PREFERENCE_KNOBS = (
    ("model_name", "embedded/<name>, a local model folder or a hub model id (org/name)"),
    ("method", "dpo (pairs + reference), orpo (pairs, no reference) or kto (rows marked good or bad)"),
    ("beta", "how far the policy may move from the reference"),
    ("sft_adapter", "start from notebook 01's adapter (runs/<run>/adapter); \"\": from the base"),
    ("dataset", "embedded/concise-answers, a .jsonl/.csv/.parquet file or a hub dataset id"),
    ("eval_dataset", "held-out pairs, the same kinds"),
    ("eval_scorers", "judges of generated held-out replies; None: the task's own"),
    ("load_in_4bit", "QLoRA: the frozen base in 4-bit NF4 (16-bit is faster on a CPU)"),
    ("lora_r", "rank r of the adapter trained here"),
    ("lora_alpha", "the update B @ A is scaled by lora_alpha / lora_r"),
    ("max_steps", "optimizer steps"),
    ("learning_rate", "peak learning rate"),
    ("per_device_train_batch_size", "pairs (KTO: rows) per step on each device"),
    ("run_dir", "this run's folder; \"\": runs/<time>-<model>"),
)
_GRPO_KNOBS = (
    ("model_name", "embedded/<name>, a local model folder or a hub model id (org/name)"),
    ("sft_adapter", "start from notebook 01's adapter (runs/<run>/adapter); \"\": from the base"),
    ("dataset", "embedded/answer-format, a .jsonl file or a hub dataset id with prompts"),
    ("eval_dataset", "held-out prompts, the same kinds"),
    ("rewards", "reward specs beside the reward functions defined below; None: the task's own"),
    ("num_generations", "completions sampled per prompt (a group)"),
    ("max_completion_length", "tokens generated per completion in training"),
    ("beta", "KL penalty to the starting policy; 0: none"),
    ("load_in_4bit", "QLoRA: the frozen base in 4-bit NF4 (16-bit is faster on a CPU)"),
    ("lora_r", "rank r (RL needs little capacity)"),
    ("lora_alpha", "the update B @ A is scaled by lora_alpha / lora_r"),
    ("max_steps", "optimizer steps"),
    ("learning_rate", "peak learning rate"),
    ("run_dir", "this run's folder; \"\": runs/<time>-<model>"),
)

CONTRACTS = {c.name: c for c in (
    NotebookContract("00_lora_basics", LoraBasicsConfig, (("", tuple(LoraBasicsConfig.model_fields)),),
                     folder_param="run_dir", results_file="checks.json"),
    NotebookContract("01_qlora_finetune", RunConfig, _RUN_CELL, folder_param="run_dir", several_machines=True,
                     knobs=_RUN_KNOBS),
    NotebookContract("02_sweep_report", SweepReportConfig, (("", ("sweep_dir",)),), results_file=None),
    NotebookContract("03_adapters", AdaptersDemoConfig, _ADAPTERS_CELL, folder_param="run_dir", params_file=True),
    NotebookContract("04_preference_tuning", PreferenceConfig, _PREFERENCE_CELL, folder_param="run_dir",
                     knobs=_PREFERENCE_KNOBS),
    NotebookContract("05_grpo", GrpoConfig, _GRPO_CELL, folder_param="run_dir", knobs=_GRPO_KNOBS),
)}


def notebook_metadata(notebook: str | Path) -> dict[str, Any]:
    """The notebook's metadata (``{}`` when the file is not a readable notebook)."""
    try:
        return json.loads(Path(notebook).read_text()).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return {}


def contract_of(notebook: str | Path) -> NotebookContract | None:
    """The contract the notebook's metadata names; for a notebook without one, that of a shipped notebook
    of the same file name (a copy made before notebooks carried their contract); else None."""
    named = notebook_metadata(notebook).get(METADATA_KEY, {})
    name = named.get("contract") if isinstance(named, dict) else None
    return CONTRACTS.get(name) if name else CONTRACTS.get(Path(notebook).stem)


def _number(value: float) -> str:
    """A float as written by hand: ``2e-4`` below 0.001 (not ``0.0002``), else Python's own ``0.003``."""
    if value == 0 or abs(value) >= 1e-3 or "e" in repr(value):
        return repr(value)
    candidates = [re.sub(r"e-0*(\d)", r"e-\1", f"{value:.{p}e}") for p in range(6)]
    return next(c for c in candidates if float(c) == value)


def literal(value: Any) -> str:
    """``value`` as Python source for a parameters cell (strings and lists in double quotes, as JSON)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, (str, list, dict)):
        return json.dumps(value)
    return repr(value)


def parameters_cell(contract: NotebookContract) -> str:
    """The notebook's parameters cell: ``name = default  # comment`` per name, after ``params_file`` where the
    notebook takes one. With ``knobs``: the knobs with their short comments; else every field, grouped under
    headings, with its help line."""
    fields = contract.schema.model_fields
    lines: list[str] = []
    if contract.takes_params_file:
        lines.append(f'{PARAMS_FILE} = ""  # {PARAMS_FILE_COMMENT}')
    if contract.knobs:
        for name, comment in contract.knobs:
            field = fields[name]
            default = field.default_factory() if field.default_factory else field.default
            lines.append(f"{name} = {literal(default)}  # {comment}")
        return "\n".join(lines)
    for heading, names in contract.cell:
        if heading:
            lines += ["", f"# --- {heading} ---"]
        for name in names:
            field = fields[name]
            default = field.default_factory() if field.default_factory else field.default
            if "=" in (field.description or ""):  # papermill reads a line with a second "=" as no parameter
                raise ValueError(f"{contract.schema.__name__}.{name}: write its description without '='")
            lines.append(f"{name} = {literal(default)}  # {field.description}")
    return "\n".join(lines)


def parameters_cell_index(cells: list[dict]) -> int | None:
    """The index of the cell tagged ``parameters`` (papermill's tag), or None."""
    return next((i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])), None)
