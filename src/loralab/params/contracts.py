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

from pydantic import BaseModel

from loralab.params.adapters_demo import AdaptersDemoConfig
from loralab.params.lora_basics import LoraBasicsConfig
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig
from loralab.params.sweep_report import SweepReportConfig

METADATA_KEY = "loralab"  # notebook metadata: {"loralab": {"contract": "<name>"}}


@dataclass(frozen=True)
class NotebookContract:
    """What a notebook takes and writes."""

    name: str  # the shipped notebook's file stem, e.g. "01_qlora_finetune"
    schema: type[BaseModel]
    cell: tuple[tuple[str, tuple[str, ...]], ...]  # the parameters cell: (heading, names); the first has none
    folder_param: str | None = None  # receives the run folder from loralab run
    results_file: str | None = "metrics.json"  # written last: a run without it is unfinished
    several_machines: bool = False  # trains under torchrun on several machines (--node-rank)

    @property
    def names(self) -> list[str]:
        """The notebook's parameters, in the cell's order."""
        return [name for _, names in self.cell for name in names]


_RUN_CELL = (
    ("", ("model_name", "load_in_4bit", "dataset", "eval_dataset", "lora_r", "lora_alpha", "target_modules",
          "max_steps", "learning_rate", "per_device_train_batch_size", "max_seq_length", "eval_scorers")),
    ("model and LoRA", ("trust_remote_code", "full_finetuning", "lora_dropout", "use_gradient_checkpointing")),
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
_ADAPTERS_CELL = (
    ("", ("base_model", "adapter_dirs", "load_in_4bit", "train_steps", "questions")),
    ("training the two adapters", ("batch_size", "learning_rate", "lora_r", "lora_alpha", "max_seq_length",
                                   "seed")),
    ("answers", ("max_new_tokens",)),
    ("merge", ("merge_adapter_name", "merge_into", "merge_parity_prompts", "merge_parity_tokens")),
    ("GGUF export", ("gguf_type", "gguf_lora", "gguf_score_questions")),
    ("output", ("output_dir",)),
)

CONTRACTS = {c.name: c for c in (
    NotebookContract("00_lora_basics", LoraBasicsConfig, (("", tuple(LoraBasicsConfig.model_fields)),),
                     folder_param="output_dir", results_file="checks.json"),
    NotebookContract("01_qlora_finetune", RunConfig, _RUN_CELL, folder_param="run_dir", several_machines=True),
    NotebookContract("02_sweep_report", SweepReportConfig, (("", ("sweep_dir",)),), results_file=None),
    NotebookContract("03_adapters", AdaptersDemoConfig, _ADAPTERS_CELL, folder_param="output_dir"),
    NotebookContract("04_preference_tuning", PreferenceConfig, _PREFERENCE_CELL, folder_param="run_dir"),
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
    """The notebook's parameters cell: ``name = default  # help line`` per name, grouped under headings."""
    fields = contract.schema.model_fields
    lines: list[str] = []
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
