"""Notebook 01's run config: every parameter of a fine-tuning run, with its help line and its limits.

    from loralab.params.run_config import validate_params, load_params
    cfg = validate_params(dict(model_name=model_name, lora_r=lora_r, ...))
    cfg = load_params("params/01_qlora_finetune/default.yaml")        # the same for a params file

Unknown keys are refused with the nearest valid name, wrong types and out-of-range values with a
sentence that says what to write instead (``loralab.params.schema``). Numbers written as ``2e-4``
are numbers; text that is not a number is refused. Params files are read with
``loralab.params.yaml_reader`` (only true/false are booleans). The notebook's own call,
``loralab.params.notebook.params_from_namespace``, adds the check that this machine can run the config.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from loralab.params.names import (
    EMBEDDED_MODELS,
    EMBEDDED_PREFIX,
    EXAMPLE_HUB_ID,
    HUB_REPO_ID,
    embedded_short_name,
    is_embedded,
)
from loralab.params.prompt_template import template_columns
from loralab.params.schema import validate_against
from loralab.params.yaml_reader import read_params_file
from loralab.plan.lora_math import alpha_scale

# "all-linear" goes to PEFT as it is: every Linear layer but the output layer (lm_head), whatever the architecture.
ATTENTION_ONLY = ["q_proj", "k_proj", "v_proj", "o_proj"]
TARGET_PRESETS = ("all-linear", "attention")
EMBEDDED_DATASET = "embedded/json-answers"
# The scorers that fit each embedded task, which eval_scorers: null means for it (the first one is the
# run's eval_score). Other data has no default scorer: held-out loss alone until the user picks some.
EMBEDDED_TASK_SCORERS = {
    EMBEDDED_DATASET: ["json_shape", "json_topic", "json_answer"],
    "embedded/short-answers": ["regex:^Answer: \\S", "contains", "chrf"],
    "embedded/concise-answers": ["regex:^The answer is [^.!?]+[.!?]$", "contains"],
}
SCORERS_THAT_MAY_FIT = "exact_match, contains, 'regex:<pattern>', json_object, choice, rouge_l, chrf"


class RunConfig(BaseModel):
    """Parameters of one fine-tuning run (notebook 01). Each field's description is its help line."""

    # protected_namespaces: `model_name` is a field (pydantic before 2.10 warns about any `model_` name)
    model_config = ConfigDict(extra="forbid", validate_default=True, protected_namespaces=())

    # model
    model_name: str = Field("embedded/smollm2-135m-instruct",
                            description="embedded/<name>, a local model folder or a hub model id (org/name)")
    trust_remote_code: bool = Field(False, description="run Python code shipped with a hub model (only for "
                                    "models you trust; off by default)")
    load_in_4bit: bool = Field(True, description="QLoRA: NF4 4-bit base (false: 16-bit base, plain LoRA)")
    full_finetuning: bool = Field(False, description="train every weight (the last resort; no LoRA, no 4-bit)")
    max_seq_length: int = Field(256, ge=16, description="tokens per example; longer rows are truncated")
    # LoRA
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank r: trainable params per layer r*(d+k)")
    lora_alpha: float = Field(32, gt=0, description="LoRA alpha; the update is scaled by alpha/r")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input, in [0, 1)")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear', 'attention' or a list of module names such as ['q_proj']"
    )
    use_gradient_checkpointing: bool = Field(False, description="recompute activations to save memory (slower; "
                                             "for long rows or a large model on a GPU)")
    # LoRA variants (docs/lora-variants.md); the defaults are plain LoRA
    use_rslora: bool = Field(False, description="rsLoRA: scale the update by alpha/sqrt(r) instead of alpha/r, so "
                             "the scale falls less as r grows")
    use_dora: bool = Field(False, description="DoRA: train a magnitude per output row next to the LoRA direction "
                           "(d more weights per layer; slower)")
    init_lora_weights: bool | str = Field(
        True, description="how A and B start: true (B zero, PEFT's default), gaussian, pissa, pissa_niter_<N>, "
                          "olora (pissa and olora start from the weight's principal directions: 16-bit base only)")
    loraplus_lr_ratio: float | None = Field(None, ge=1, le=1000, description="LoRA+: B (and DoRA's magnitude) "
                                            "learns this many times faster than A, e.g. 16; None: one rate")
    # data
    dataset: str = Field(EMBEDDED_DATASET, description="embedded/json-answers, embedded/short-answers, a local "
                         "file (.jsonl, .csv, .tsv, .parquet, .json, .arrow) or a hub dataset id")
    dataset_split: str = Field("train", description="split (or slice such as train[:2000]) of a hub dataset")
    prompt_template: str = Field("", description="map your columns: the user turn built from a row's columns, e.g. "
                                 "'Classify this review: {text}' ('': the rows are chat rows: messages, "
                                 "conversations or instruction/output)")
    answer_column: str = Field("", description="with prompt_template: the column holding the answer to learn, "
                               "e.g. label")
    system_prompt: str = Field("", description="with prompt_template: a system turn put before every row ('': none)")
    overlong_rows: Literal["truncate", "drop"] = Field(
        "truncate", description="rows longer than max_seq_length: truncate (cuts the answer's end) or drop them"
    )
    # evaluation: a held-out split, its loss, and scorers of generated replies (loralab.eval)
    eval_dataset: str = Field(EMBEDDED_DATASET, description="held-out rows: embedded/<name>, a local file, a hub "
                              "dataset id (mapped as dataset is), or '' (none, or carve eval_fraction from the "
                              "training rows)")
    eval_split: str = Field("", description="split of eval_dataset, e.g. test or train[-200:] ('': eval for "
                            "embedded datasets, test for hub datasets)")
    eval_fraction: float = Field(0.0, ge=0, lt=1, description="share of the training rows held out (seeded) when "
                                 "eval_dataset is ''; 0: none")
    eval_scorers: list[str] | None = Field(
        None, description="scorers of generated held-out replies, e.g. [exact_match, contains, 'regex:^Answer: ', "
                          "json_object, choice, rouge_l, chrf, 'python:module:function']; []: held-out loss only; "
                          "None: the embedded task's own scorers, loss only for other data")
    eval_examples: int = Field(30, ge=1, description="held-out prompts answered and scored before and after training")
    eval_steps: int = Field(0, ge=0, description="held-out loss every N training steps (0: only before and after)")
    early_stopping_patience: int = Field(0, ge=0, description="stop after N evaluations without a lower held-out "
                                         "loss (0: off; needs eval_steps)")
    # retention: what the adapter cost, by lm-evaluation-harness tasks before and after (loralab.eval.retention)
    retention_tasks: list[str] = Field(
        default_factory=list,
        description="lm-evaluation-harness tasks run on the base before training and on base + adapter after, "
                    "e.g. [loralab_general_knowledge] (offline) or [arc_easy, hellaswag] (hub data); []: none")
    retention_limit: int | None = Field(None, ge=1, description="examples per retention task (None: all of them)")
    # training
    max_steps: int = Field(60, ge=1, description="optimizer steps")
    per_device_train_batch_size: int = Field(8, ge=1, description="examples per step per device")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches summed into one step")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="peak learning rate (LoRA: 1e-4..3e-4 is usual)")
    warmup_steps: int = Field(5, ge=0, description="linear warm-up steps")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="learning-rate schedule after warm-up"
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    optim: str = Field("adamw_torch", description="optimizer name for transformers (GPU: adamw_8bit)")
    seed: int = Field(3407, ge=0, le=2**32 - 1, description="seed for LoRA init, data order and sampling "
                      "(0 to 4294967295, what numpy and torch accept)")
    logging_steps: int = Field(1, ge=1, description="log the loss every N steps")
    packing: Literal["none", "padding_free", "packed"] = Field(
        "padding_free", description="batch layout: none (rows padded to the batch's longest), padding_free (the "
                                    "same rows, concatenated without pad tokens) or packed (whole rows fill "
                                    "max_seq_length-token sequences: more rows per step); loralab.train.packing")
    # checkpoints: a Colab T4 step on a 3B model takes ~10-15 s, so 25 steps lose at most ~5 minutes of
    # work when the session dies, and a checkpoint (adapter + optimizer, ~150 MB there) costs seconds.
    save_steps: int = Field(25, ge=0, description="write a checkpoint every N steps (0: no checkpoints)")
    save_total_limit: int = Field(2, ge=2, description="checkpoints kept, the newest ones (at least 2: the previous "
                                  "whole one stays until the new one is marked complete)")
    resume: bool = Field(True, description="continue from the newest complete checkpoint in run_dir, if any")
    # several devices / machines: data-parallel training under torchrun (loralab.train.workers)
    num_processes: int = Field(1, ge=1, le=1024, description="training processes on this machine (devices; on a "
                               "CPU, processes that share the cores); > 1 trains under torchrun with DDP")
    num_nodes: int = Field(1, ge=1, le=1024, description="machines taking part in training (each runs loralab run "
                           "with its own --node-rank)")
    parallel_strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="with several processes: ddp (a full copy of the model per device, gradients "
                           "averaged) or fsdp (FSDP2 through accelerate: base and optimizer sharded over the "
                           "devices, for a model that fits only sharded; GPUs only)")
    master_addr: str = Field("127.0.0.1", description="address of machine 0, where the workers meet (several "
                             "machines: its address on your network)")
    master_port: int = Field(0, ge=0, le=65535, description="port on machine 0 for the workers to meet (0: a free "
                             "one, for a single machine; several machines need a fixed one, e.g. 29500)")
    # experiment tracking: the trainer's own integrations, pointed into the run folder (loralab.train.tracking)
    report_to: Literal["none", "tensorboard", "mlflow", "wandb", "trackio"] = Field(
        "none", description="log the run to a tracker: none, tensorboard (events in run_dir/tensorboard), mlflow "
                            "(run_dir/mlflow.db unless MLFLOW_TRACKING_URI is set), wandb or trackio")
    # inference and output
    max_new_tokens: int = Field(48, ge=1, description="tokens generated per eval answer")
    show_examples: int = Field(3, ge=0, description="held-out answers printed before/after training")
    run_dir: str = Field("", description="folder for this run's outputs ('': runs/<time>-<model>)")

    @field_validator("target_modules")
    @classmethod
    def _known_targets(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str) and value not in TARGET_PRESETS:
            raise ValueError(f"write 'all-linear', 'attention' or a list of module names, not {value!r}")
        if isinstance(value, list) and (not value or not all(v.strip() for v in value)):
            raise ValueError("a list of target modules needs at least one non-empty module name")
        return value

    @field_validator("prompt_template", "system_prompt", mode="before")
    @classmethod
    def _template_text(cls, value: Any) -> Any:
        if isinstance(value, dict):  # prompt_template: {text} in a YAML file is a mapping, not text
            raise ValueError(  # noqa: TRY004  pydantic reports a ValueError as the field's one line
                "YAML read the braces as a mapping: quote the text, e.g. prompt_template: 'Classify this review: "
                "{text}'")
        return value

    @field_validator("init_lora_weights")
    @classmethod
    def _known_init(cls, value: bool | str) -> bool | str:
        return check_init_lora_weights(value)

    @field_validator("retention_tasks", mode="before")
    @classmethod
    def _task_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # "arc_easy,hellaswag", as the harness's own --tasks takes them
            value = [name.strip() for name in value.split(",") if name.strip()]
        if isinstance(value, list) and not all(isinstance(v, str) and v.strip() for v in value):
            raise ValueError("write task names, e.g. [loralab_general_knowledge] or [arc_easy, hellaswag]")
        return value

    @field_validator("model_name")
    @classmethod
    def _plausible_model(cls, value: str) -> str:
        if is_embedded(value):
            embedded_short_name(value)  # raises with the list of embedded names
            return value
        if _looks_like_path(value):
            folder = Path(value).expanduser()
            if not (folder / "config.json").is_file():
                raise ValueError(f"{value!r} is not a model folder (no config.json there); give a folder that "
                                 f"save_pretrained wrote, or {_model_name_choices()}")
            if not has_weights(folder):
                raise ValueError(f"{value!r} holds config.json but no weights (no *.safetensors or *.bin file, no "
                                 "sharded index such as model.safetensors.index.json): copy the weight files next to "
                                 "config.json (model.save_pretrained(folder) writes both), or give the folder that "
                                 "holds them")
            return value
        if not HUB_REPO_ID.fullmatch(value) or "--" in value or ".." in value or value.endswith(".git"):
            raise ValueError(f"{value!r} is not a model name: write {_model_name_choices()}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunConfig:
        if self.full_finetuning and self.load_in_4bit:
            raise ValueError("full_finetuning trains every weight and cannot use a 4-bit base: "
                             "set load_in_4bit: false")
        self._consistent_variant()
        if self.num_nodes > 1 and not self.master_port:
            raise ValueError(f"num_nodes: {self.num_nodes} machines meet on master_addr:master_port, and master_port "
                             "is 0 (a free port, which the other machines cannot know): set master_port, e.g. 29500")
        if self.parallel_strategy == "fsdp" and self.world_size == 1:
            raise ValueError("parallel_strategy: fsdp shards the model over several processes, and num_processes "
                             "and num_nodes are 1: set num_processes (e.g. 2, one per GPU), or parallel_strategy: "
                             "ddp")
        self._consistent_eval()
        self._consistent_columns()
        return self

    def answer_columns(self) -> dict[str, str]:
        """The parameters that name answer columns, and their values: {"answer_column": ...} for notebook 01."""
        return {"answer_column": self.answer_column}

    def _consistent_columns(self) -> None:
        """A column map is whole (template and answer columns), names columns, and maps a file, not embedded rows."""
        answers = self.answer_columns()
        given = [name for name, column in answers.items() if column]
        if not self.prompt_template:
            if given:
                verbs = "map a row's columns and need" if len(given) > 1 else "maps a row's column and needs"
                raise ValueError(f"{' and '.join(given)} {verbs} prompt_template, the user turn "
                                 "built from them, e.g. 'Classify this review: {text}'; or write "
                                 f"{': '' and '.join(given)}: '' for a file in a chat format")
            if self.system_prompt:
                raise ValueError("system_prompt goes before every row mapped by prompt_template, and there is no "
                                 "column map (chat rows carry their own system turn): set prompt_template and "
                                 f"{' and '.join(answers)}, or system_prompt: ''")
            return
        columns = template_columns(self.prompt_template)
        missing = [name for name, column in answers.items() if not column.strip()]
        if missing:
            raise ValueError(f"prompt_template maps a row's columns to the prompt: set {' and '.join(missing)} to "
                             f"the column{'s' * (len(missing) > 1)} holding the answer"
                             f"{'s' * (len(missing) > 1)}, or prompt_template: '' for a file in a chat format")
        for name, column in answers.items():
            if column in columns:
                raise ValueError(f"prompt_template names {{{column}}}, the {name}: the prompt would hold the "
                                 "answer the model is to learn; leave it out of the template")
        if len(set(answers.values())) < len(answers):
            raise ValueError(f"{' and '.join(answers)} name the same column {self.answer_columns()}: the chosen "
                             "and the rejected reply are two columns")
        for name in ("dataset", "eval_dataset"):
            value = getattr(self, name)
            if is_embedded(value):
                raise ValueError(f"{name} is the embedded {value!r}, whose rows are chat rows already, and "
                                 "prompt_template maps a file's columns: give your file (or hub dataset) as "
                                 f"{name}, or prompt_template: ''")

    def _consistent_variant(self) -> None:
        variant = [name for name, on in (("use_rslora", self.use_rslora), ("use_dora", self.use_dora),
                                         ("init_lora_weights", self.init_lora_weights is not True),
                                         ("loraplus_lr_ratio", self.loraplus_lr_ratio is not None)) if on]
        if self.full_finetuning and variant:
            raise ValueError(f"{', '.join(variant)} {'shapes' if len(variant) == 1 else 'shape'} a LoRA adapter, and full_finetuning trains every weight "
                             "without one: set full_finetuning: false, or remove " + ", ".join(variant))
        if self.load_in_4bit and changes_base(self.init_lora_weights):
            raise ValueError(f"init_lora_weights: {self.init_lora_weights} takes the adapter out of the base weights "
                             "(it rewrites them), which a 4-bit base cannot hold: set load_in_4bit: false, or "
                             "init_lora_weights: true")
        if self.use_dora and changes_base(self.init_lora_weights):
            raise ValueError(f"use_dora with init_lora_weights: {self.init_lora_weights}: the adapter is saved converted "
                             "for the original base (PEFT's PiSSA/OLoRA conversion), which drops DoRA's magnitudes: "
                             "choose one of them")
        if self.loraplus_lr_ratio is not None and self.parallel_strategy == "fsdp":
            raise ValueError("loraplus_lr_ratio groups the adapter's weights by name, which FSDP's flattened shards "
                             "hide: write parallel_strategy: ddp, or loraplus_lr_ratio: null")

    def _consistent_eval(self) -> None:
        if self.eval_scorers is None:  # the trained task's own scorers; for other data held-out loss alone
            self.eval_scorers = list(EMBEDDED_TASK_SCORERS.get(self.dataset, [])) if self.has_eval else []
            self._scorers_left_to_user = self.has_eval and self.dataset not in EMBEDDED_TASK_SCORERS
        if self.eval_dataset and self.eval_fraction:
            raise ValueError(f"eval_dataset ({self.eval_dataset!r}) and eval_fraction ({self.eval_fraction:g}) both "
                             "choose the held-out rows: set eval_dataset: '' to carve eval_fraction from the "
                             "training rows, or eval_fraction: 0 to use eval_dataset")
        if not self.has_eval:
            needs = [name for name in ("eval_steps", "early_stopping_patience") if getattr(self, name)]
            if self.eval_scorers:
                needs.insert(0, "eval_scorers")
            if needs:
                raise ValueError(f"{', '.join(needs)} need held-out rows, and there are none (eval_dataset is '' and "
                                 "eval_fraction is 0): set eval_dataset to a .jsonl file or hub dataset, or "
                                 f"eval_fraction: 0.05; or write {' and '.join(f'{n}: ' + ('[]' if n == 'eval_scorers' else '0') for n in needs)}")
        if self.early_stopping_patience and not self.eval_steps:
            raise ValueError("early_stopping_patience watches the held-out loss measured every eval_steps steps: "
                             "set eval_steps (e.g. 10), or early_stopping_patience: 0")
        if is_embedded(self.eval_dataset) and self.eval_dataset != self.dataset:
            raise ValueError(f"eval_dataset is the embedded {self.eval_dataset!r} but dataset is {self.dataset!r}: "
                             "scores would measure the embedded task, not the one trained. Set eval_dataset to "
                             f"{self.dataset!r} when it has a held-out split, or to your held-out file (or hub "
                             "dataset with eval_split)"
                             + (", or eval_dataset: '' with eval_fraction: 0.05" if type(self) is RunConfig else "")
                             + "; and choose eval_scorers for your data")

    _scorers_left_to_user: bool = PrivateAttr(False)

    @property
    def scorers_hint(self) -> str | None:
        """One line for a run on the user's own data that left eval_scorers to the default (None otherwise)."""
        if not self._scorers_left_to_user:
            return None
        return (f"eval_scorers: none chosen for {self.eval_dataset or self.dataset}, so the held-out rows give their "
                f"loss alone; scorers that may fit your answers: {SCORERS_THAT_MAY_FIT}")

    @property
    def world_size(self) -> int:
        """Training processes in all: num_processes x num_nodes."""
        return self.num_processes * self.num_nodes

    @property
    def global_batch(self) -> int:
        """Examples per optimizer step: per-device batch x gradient accumulation x world size."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps * self.world_size

    @property
    def has_eval(self) -> bool:
        """True when the run has held-out rows (from eval_dataset or eval_fraction)."""
        return bool(self.eval_dataset or self.eval_fraction)

    @property
    def target_module_list(self) -> str | list[str]:
        """``target_modules`` for ``get_peft_model``: ``"all-linear"`` (PEFT's meaning: every Linear layer but the
        output layer), or the module names (``"attention"``: q, k, v and o)."""
        if self.target_modules == "all-linear":
            return "all-linear"
        return list(ATTENTION_ONLY if self.target_modules == "attention" else self.target_modules)

    @property
    def lora_variant(self) -> str:
        """The adapter's variant in words: "LoRA", "rsLoRA + DoRA", "LoRA (PiSSA init) + LoRA+ x16", ..."""
        return variant_name(self.use_rslora, self.use_dora, self.init_lora_weights, self.loraplus_lr_ratio)


# init_lora_weights values that work through Unsloth's get_peft_model and PEFT 0.21 without more inputs: True,
# "gaussian" and these (eva and corda need data passes, loftq a LoftQConfig, mica / lora_ga / orthogonal are left out).
RESIDUAL_INITS_NAMES = ("pissa", "olora")  # and pissa_niter_<N>: they move the principal part out of W
INIT_NAMES = {True: "", "gaussian": "Gaussian init", "pissa": "PiSSA init", "olora": "OLoRA init"}


def check_init_lora_weights(value: bool | str) -> bool | str:
    """The value if PEFT and Unsloth's path take it; ValueError with the choices otherwise."""
    if value is True or value in ("gaussian", *RESIDUAL_INITS_NAMES):
        return value
    if isinstance(value, str) and re.fullmatch(r"pissa_niter_[1-9][0-9]*", value):
        return value
    if value is False:
        raise ValueError("false starts B non-zero, so the untrained adapter already changes "
                         "the model (PEFT's testing aid): write true")
    raise ValueError(f"write true, gaussian, pissa, pissa_niter_<N> (e.g. pissa_niter_4) or "
                     f"olora, not {value!r}")


def changes_base(init_lora_weights: bool | str) -> bool:
    """True for PiSSA and OLoRA: they subtract the adapter's start from the base weights (a residual base)."""
    return isinstance(init_lora_weights, str) and init_lora_weights.split("_niter_")[0] in RESIDUAL_INITS_NAMES


def scale_formula(alpha: float, r: int, use_rslora: bool = False) -> str:
    """The scale with its formula: "scale alpha/r = 32/16 = 2" or "scale alpha/sqrt(r) = 32/sqrt(64) = 4"."""
    value = alpha_scale(alpha, r, use_rslora)
    if use_rslora:
        return f"scale alpha/sqrt(r) = {alpha:g}/sqrt({r}) = {value:.4g}"
    return f"scale alpha/r = {alpha:g}/{r} = {value:.4g}"


def variant_name(use_rslora: bool, use_dora: bool, init_lora_weights: bool | str,
                 loraplus_lr_ratio: float | None) -> str:
    """A short name for the variant: "LoRA", "rsLoRA", "DoRA", "LoRA (PiSSA init)", "LoRA + LoRA+ x16"."""
    name = ("rs" if use_rslora else "") + ("DoRA" if use_dora else "LoRA")
    init = str(init_lora_weights)
    label = INIT_NAMES.get(init_lora_weights, "") if init_lora_weights in INIT_NAMES else (
        f"PiSSA init, {init.split('_niter_')[1]} iterations" if init.startswith("pissa_niter_") else init)
    if label:
        name += f" ({label})"
    if loraplus_lr_ratio is not None:
        name += f" + LoRA+ x{loraplus_lr_ratio:g}"
    return name


WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def has_weights(folder: Path) -> bool:
    """True when a model folder holds weights transformers can load: safetensors or .bin files, or the index of
    sharded ones (``model.safetensors.index.json``)."""
    return any(path.is_file() for pattern in WEIGHT_PATTERNS for path in folder.glob(pattern))


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", "./", "../", "~", "\\")) or os.path.isdir(os.path.expanduser(value))


def _model_name_choices() -> str:
    embedded = ", ".join(EMBEDDED_PREFIX + name for name in EMBEDDED_MODELS)
    return (f"an embedded model ({embedded}), a local folder with config.json, or a hub id "
            f"org/name such as {EXAMPLE_HUB_ID}")


FIELD_NAMES = list(RunConfig.model_fields)


def validate_params(params: dict[str, Any], source: str = "params") -> RunConfig:
    """Turn notebook 01's parameters (or a params file's mapping) into a RunConfig, or raise ParamsError."""
    return validate_against(RunConfig, params, source)


def load_params(path: str | Path) -> RunConfig:
    """Read and validate a YAML params file."""
    return validate_params(read_params_file(path), source=str(path))
