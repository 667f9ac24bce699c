"""TRL's DPOTrainer, ORPOTrainer or KTOTrainer as notebook 04 builds them: the knobs in view, loralab's settings beside.

    args = DPOConfig(beta=cfg.beta, max_steps=..., learning_rate=..., **preference_settings(cfg, run_dir / "checkpoints"))
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=..., processing_class=tokenizer,
                         callbacks=run_callbacks(cfg, checkpoint))
    trainer = build_preference_trainer(model, tokenizer, train_rows, cfg, output_dir=...)   # the same, one call

DPO and KTO need a reference model. With a PEFT model none is copied: TRL's ``ref_model=None`` makes
the reference the same base with the adapter switched off, or, when the model carries a frozen
adapter named ``ref`` (a copy of the SFT adapter it starts from: ``loralab.adapters.sft_start``), that adapter. ORPO has no reference. DPO and KTO are in ``trl``; ORPO is in ``trl.experimental.orpo`` in
TRL 1.15. Checkpoints are whole or absent as in notebook 01 (``loralab.train.checkpoints``), so a killed
run resumes from the newest complete one. With ``cfg.loraplus_lr_ratio`` the optimizer is PEFT's LoRA+ one
(``loralab.train.loraplus``).
"""

from __future__ import annotations

from pathlib import Path

from loralab.params.preference_config import PreferenceConfig
from loralab.train.loraplus import loraplus_optimizer
from loralab.train.trainer import common_args, run_callbacks

REFERENCE_ADAPTER = "ref"  # the adapter name TRL uses as the reference when it is present


# The config knobs notebook 04 writes out in its trainer cell; preference_settings gives the rest.
CELL_KNOBS = ("beta", "per_device_train_batch_size", "max_steps", "learning_rate", "warmup_steps", "optim", "seed")


def preference_args(cfg: PreferenceConfig, output_dir: str | Path, has_eval: bool) -> dict:
    """Every argument of the method's TRL config (``DPOConfig``, ``ORPOConfig`` or ``KTOConfig``) for ``cfg``."""
    return common_args(cfg, output_dir, has_eval) | {"beta": cfg.beta} | (
        {"loss_type": cfg.loss_type} if cfg.method == "dpo" else {})


def preference_settings(cfg: PreferenceConfig, output_dir: str | Path, has_eval: bool = False) -> dict:
    """The config arguments a notebook leaves to loralab (``preference_args`` minus ``CELL_KNOBS``): checkpoints,
    precision and device, DPO's loss, tracking and progress."""
    return {k: v for k, v in preference_args(cfg, output_dir, has_eval).items() if k not in CELL_KNOBS}


def trainer_classes(method: str):
    """(config class, trainer class) of TRL for ``method``: dpo, orpo (``trl.experimental``) or kto."""
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if method == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOConfig, ORPOTrainer


def build_preference_trainer(model, tokenizer, train_rows: list[dict], cfg: PreferenceConfig,
                             output_dir: str | Path, eval_rows: list[dict] | None = None,
                             checkpoint: str | Path | None = None):
    """Notebook 04's TRL preference trainer in one call, on normalised rows (``loralab.data.preference_rows``);
    ``checkpoint``: the one ``trainer.train(resume_from_checkpoint=...)`` will resume from."""
    import datasets

    datasets.disable_progress_bars()
    config_class, trainer_class = trainer_classes(cfg.method)
    args = config_class(**preference_args(cfg, output_dir, has_eval=bool(eval_rows)))
    kwargs = {"ref_model": None} if cfg.uses_reference else {}
    return trainer_class(model=model, args=args, train_dataset=datasets.Dataset.from_list(train_rows),
                         eval_dataset=datasets.Dataset.from_list(eval_rows) if eval_rows else None,
                         processing_class=tokenizer, callbacks=run_callbacks(cfg, checkpoint),
                         optimizers=(loraplus_optimizer(model, args, cfg.loraplus_lr_ratio), None), **kwargs)
