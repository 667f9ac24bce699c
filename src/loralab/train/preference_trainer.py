"""The preference-trainer factory: TRL's DPOTrainer, ORPOTrainer or KTOTrainer from a PreferenceConfig.

    from loralab.train.preference_trainer import build_preference_trainer
    trainer = build_preference_trainer(model, tokenizer, train_rows, cfg, output_dir=run_dir / "checkpoints",
                                       eval_rows=eval_rows)
    trainer.train(resume_from_checkpoint=resume_checkpoint(run_dir / "checkpoints", cfg))

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


def _trainer_classes(method: str):
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
    """A TRL preference trainer for ``model`` on normalised rows (``loralab.data.preference_rows``); ``checkpoint``:
    the one ``trainer.train(resume_from_checkpoint=...)`` will resume from."""
    import datasets

    datasets.disable_progress_bars()
    config_class, trainer_class = _trainer_classes(cfg.method)
    extra = {"loss_type": cfg.loss_type} if cfg.method == "dpo" else {}
    args = config_class(**common_args(cfg, output_dir, has_eval=bool(eval_rows)), beta=cfg.beta, **extra)
    kwargs = {"ref_model": None} if cfg.uses_reference else {}
    return trainer_class(model=model, args=args, train_dataset=datasets.Dataset.from_list(train_rows),
                         eval_dataset=datasets.Dataset.from_list(eval_rows) if eval_rows else None,
                         processing_class=tokenizer, callbacks=run_callbacks(cfg, checkpoint),
                         optimizers=(loraplus_optimizer(model, args, cfg.loraplus_lr_ratio), None), **kwargs)

