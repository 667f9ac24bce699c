"""The preference-trainer factory: TRL's DPOTrainer, ORPOTrainer or KTOTrainer from a PreferenceConfig.

    from loralab.train.preference_trainer import build_preference_trainer
    trainer = build_preference_trainer(model, tokenizer, train_rows, cfg, output_dir=run_dir / "checkpoints",
                                       eval_rows=eval_rows)
    trainer.train(resume_from_checkpoint=resume_checkpoint(run_dir / "checkpoints", cfg))

DPO and KTO need a reference model. With a PEFT model none is copied: TRL's ``ref_model=None`` makes
the reference the same base with the adapter switched off, or, when the model carries a frozen
adapter named ``ref`` (a copy of the SFT adapter it starts from: ``loralab.adapters.sft_start``), that adapter. ORPO has no reference. DPO and KTO are in ``trl``; ORPO is in ``trl.experimental.orpo`` in
TRL 1.15. Checkpoints are written aside and renamed into place as in notebook 01
(``loralab.train.checkpoints``), so a killed run resumes from the newest complete one.
"""

from __future__ import annotations

from pathlib import Path

from loralab.params.preference_config import PreferenceConfig
from loralab.train.checkpoints import AtomicCheckpoints, ResumeAsTrained

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
                             output_dir: str | Path, eval_rows: list[dict] | None = None):
    """A TRL preference trainer for ``model`` on normalised rows (``loralab.data.preference_rows``)."""
    import datasets
    import torch

    datasets.disable_progress_bars()
    config_class, trainer_class = _trainer_classes(cfg.method)
    on_gpu = torch.cuda.is_available()
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    extra = {"loss_type": cfg.loss_type} if cfg.method == "dpo" else {}
    args = config_class(
        output_dir=str(output_dir),
        beta=cfg.beta,
        max_length=cfg.max_seq_length,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        lr_scheduler_type=cfg.lr_scheduler_type,
        weight_decay=cfg.weight_decay,
        optim=cfg.optim,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        gradient_checkpointing=cfg.use_gradient_checkpointing,
        save_strategy="steps" if 0 < cfg.save_steps < cfg.max_steps else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if eval_rows and cfg.eval_steps else "no",
        eval_steps=cfg.eval_steps or None,
        report_to="none",
        disable_tqdm=True,
        bf16=bf16,
        fp16=on_gpu and not bf16,
        use_cpu=not on_gpu,
        dataset_num_proc=1,
        **extra,
    )
    mixed = type(f"Loralab{trainer_class.__name__}", (AtomicCheckpoints, ResumeAsTrained, trainer_class), {})
    kwargs = {"ref_model": None} if cfg.uses_reference else {}
    trainer = mixed(model=model, args=args, train_dataset=datasets.Dataset.from_list(train_rows),
                    eval_dataset=datasets.Dataset.from_list(eval_rows) if eval_rows else None,
                    processing_class=tokenizer, **kwargs)
    trainer.run_params = cfg.model_dump()  # recorded in each checkpoint; a resume with other params is refused
    return trainer

