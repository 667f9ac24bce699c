"""TRL's ``SFTTrainer`` as notebook 01 builds it: the knobs a reader changes in view, loralab's settings beside them.

    args = SFTConfig(per_device_train_batch_size=..., max_steps=..., learning_rate=..., ...,
                     **trainer_settings(cfg, run_dir / "checkpoints", has_eval=True))
    keep_rows_apart(model, tokenizer, args, cfg.packing)
    trainer = SFTTrainer(model=model, args=args, train_dataset=..., eval_dataset=..., processing_class=tokenizer,
                         optimizers=(loraplus_optimizer(model, args, cfg.loraplus_lr_ratio), None),
                         callbacks=run_callbacks(cfg, checkpoint))
    before = heldout_loss(trainer)                  # {"eval_loss": 2.91, "eval_perplexity": 18.4}, teacher-forced

``build_trainer`` makes the same trainer in one call (``loralab eval``, the torchrun workers, benchmarks);
``sft_args`` is the one list of what the config sets on ``SFTConfig``. Loss is computed on the completion (the
assistant's answer) only, in training and on the held-out rows alike: ``heldout_loss`` runs the trainer's own
evaluation loop (loss only, no logits kept), and with ``cfg.eval_steps`` the trainer measures it every N steps
(``eval_loss`` in the log history); ``cfg.early_stopping_patience`` adds transformers' ``EarlyStoppingCallback``
on that loss. Logging goes to the trainer's ``state.log_history`` (read by ``loralab.runs.folder``); progress
as a bar in a notebook, as lines in a terminal (``loralab.train.progress``). Checkpoints are whole or absent
(``loralab.train.checkpoints``), so a killed run resumes from the newest complete one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from loralab.data.supervision import supervised_dataset
from loralab.params.run_config import RunConfig
from loralab.train.checkpoints import resume_as_trained, whole_checkpoints
from loralab.train.loraplus import loraplus_optimizer
from loralab.train.packing import keep_rows_apart, packing_args
from loralab.train.progress import progress_callbacks, progress_mode


def precision_for(capability: tuple[int, int] | None) -> dict[str, bool]:
    """Mixed precision for a CUDA device of compute ``capability`` (None: a CPU): bf16 from Ampere (8.x) on,
    fp16 before it (a T4 is 7.5 and only emulates bf16, though ``torch.cuda.is_bf16_supported()`` says True).
    It is the rule Unsloth's ``is_bfloat16_supported`` and ``from_pretrained(dtype=None)`` follow, so the
    trainer computes in the dtype the model was loaded in. On a CPU: neither flag (Unsloth picks the dtype)."""
    if capability is None:
        return {"bf16": False, "fp16": False, "use_cpu": True}
    bf16 = capability[0] >= 8
    return {"bf16": bf16, "fp16": not bf16, "use_cpu": False}


def common_args(cfg: RunConfig, output_dir: str | Path, has_eval: bool) -> dict:
    """The TrainingArguments every loralab trainer shares (SFT, DPO, ORPO, KTO), from the config."""
    import torch

    on_gpu = torch.cuda.is_available()
    return {
        "output_dir": str(output_dir),
        "max_length": cfg.max_seq_length,
        "per_device_train_batch_size": cfg.per_device_train_batch_size,
        "per_device_eval_batch_size": cfg.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "max_steps": cfg.max_steps,
        "learning_rate": cfg.learning_rate,
        "warmup_steps": cfg.warmup_steps,
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "weight_decay": cfg.weight_decay,
        "optim": cfg.optim,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "logging_steps": cfg.logging_steps,
        "gradient_checkpointing": cfg.use_gradient_checkpointing,  # TRL 1.x turns it on by default
        # A run no longer than one interval writes no checkpoint (it would only be the final state).
        "save_strategy": "steps" if 0 < cfg.save_steps < cfg.max_steps else "no",
        "save_steps": cfg.save_steps or 500,  # unused when save_strategy is "no"
        "save_total_limit": cfg.save_total_limit,
        "eval_strategy": "steps" if has_eval and cfg.eval_steps else "no",
        "eval_steps": cfg.eval_steps or None,
        "report_to": [cfg.report_to] if cfg.report_to != "none" else "none",  # loralab.train.tracking
        "disable_tqdm": progress_mode() != "notebook",  # loralab.train.progress: lines go to the terminal
        **precision_for(torch.cuda.get_device_capability() if on_gpu else None),
        # under torchrun (loralab.train.workers): DDP over gloo on CPUs; NCCL, the default, on GPUs
        "ddp_backend": "gloo" if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        # Tokenize in this process. datasets >= 4.1 starts a worker pool for any num_proc >= 1, and on this
        # CPU path TRL hands the value straight to Dataset.map: 1 started eight Pool(1) children per SFT
        # trainer (measured: 6.4 s to build it, 1.0 s with None). On a GPU, Unsloth's rewritten SFT trainer
        # reads None as "size the pool for me" and 1 as in-process, so it keeps 1 there.
        "dataset_num_proc": 1 if on_gpu else None,
        **fsdp_args(cfg),
    }


# FSDP2 through accelerate's plugin: one unit per decoder block (the model's own _no_split_modules),
# parameters resharded after each block's forward. A 4-bit base is loaded with its packed bytes stored
# in the compute dtype (bnb_4bit_quant_storage), which Unsloth does when UNSLOTH_FSDP2=1 (the worker
# sets it): FSDP2 cannot shard uint8 storage. Checkpoints keep a full state dict (the adapter is small).
FSDP_CONFIG = {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "reshard_after_forward": True,
               "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False}


def fsdp_args(cfg: RunConfig) -> dict:
    """``fsdp`` / ``fsdp_config`` for the Trainer when ``cfg.parallel_strategy`` is fsdp, else nothing."""
    if cfg.parallel_strategy != "fsdp":
        return {}
    return {"fsdp": True, "fsdp_config": dict(FSDP_CONFIG)}


# The SFTConfig knobs notebook 01 writes out in its trainer cell; trainer_settings gives the rest.
CELL_KNOBS = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_steps", "learning_rate",
              "warmup_steps", "lr_scheduler_type", "weight_decay", "optim", "seed", "logging_steps")


def sft_args(cfg: RunConfig, output_dir: str | Path, has_eval: bool) -> dict:
    """Every ``SFTConfig`` argument of a run of ``cfg``: the shared ones, the batch layout, the loss on answers."""
    return common_args(cfg, output_dir, has_eval) | packing_args(cfg.packing) | {
        "completion_only_loss": True,
        "prediction_loss_only": True,  # held-out loss through the trainer's own loop, no logits kept
        "metric_for_best_model": "eval_loss" if cfg.early_stopping_patience else None,
        "greater_is_better": False if cfg.early_stopping_patience else None,
    }


def trainer_settings(cfg: RunConfig, output_dir: str | Path, has_eval: bool) -> dict:
    """The ``SFTConfig`` arguments a notebook leaves to loralab: where checkpoints go and how often, precision
    and device, the batch layout, held-out evaluation, tracking and progress (``sft_args`` minus ``CELL_KNOBS``)."""
    return {k: v for k, v in sft_args(cfg, output_dir, has_eval).items() if k not in CELL_KNOBS}


def run_callbacks(cfg, checkpoint: str | Path | None) -> list:
    """The trainer callbacks of a run: checkpoints whole or absent (with the run's params), a resume that keeps
    the first try's numerics, early stopping (``early_stopping_patience``), progress lines in a terminal."""
    callbacks = [whole_checkpoints(cfg.model_dump()), resume_as_trained(checkpoint)]
    if getattr(cfg, "early_stopping_patience", 0):
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(cfg.early_stopping_patience))
    return callbacks + progress_callbacks()


def build_trainer(model, tokenizer, train_dataset, cfg: RunConfig, output_dir: str | Path, eval_dataset=None,
                  checkpoint: str | Path | None = None):
    """Notebook 01's ``SFTTrainer`` in one call. Datasets of chat rows (``messages``) or prompt/completion pairs
    are tokenized and cut as the notebook's are (``supervised_dataset``); token datasets are taken as they are."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()  # no "Tokenizing train dataset" bars in notebooks and logs
    args = SFTConfig(**sft_args(cfg, output_dir, has_eval=eval_dataset is not None))
    keep_rows_apart(model, tokenizer, args, cfg.packing)
    return SFTTrainer(model=model, args=args, processing_class=tokenizer,
                      train_dataset=_tokens(train_dataset, tokenizer, cfg.max_seq_length),
                      eval_dataset=_tokens(eval_dataset, tokenizer, cfg.max_seq_length),
                      optimizers=(loraplus_optimizer(model, args, cfg.loraplus_lr_ratio), None),
                      callbacks=run_callbacks(cfg, checkpoint))


def _tokens(dataset, tokenizer, max_seq_length: int):
    """``dataset`` as ``input_ids`` + ``completion_mask`` rows cut at ``max_seq_length``; None stays None."""
    if dataset is None or "input_ids" in dataset.column_names:
        return dataset
    rows = [{"messages": r["messages"]} if "messages" in r else {"messages": [*r["prompt"], *r["completion"]]}
            for r in dataset]
    return supervised_dataset(rows, tokenizer, max_seq_length)


def heldout_loss(trainer) -> dict[str, float | None]:
    """Mean loss on the held-out completion tokens (teacher-forced) and its perplexity; None without held-out rows."""
    if trainer.eval_dataset is None:
        return {"eval_loss": None, "eval_perplexity": None}
    loss = float(trainer.evaluate()["eval_loss"])
    return {"eval_loss": loss, "eval_perplexity": math.exp(min(loss, 700.0))}


def build_eval_trainer(model, tokenizer, eval_dataset, cfg: RunConfig, output_dir: str | Path):
    """A trainer that only evaluates (``loralab eval``): the same masking and batching as a training run."""
    return build_trainer(model, tokenizer, eval_dataset, cfg, output_dir, eval_dataset=eval_dataset)
