"""Train: what loralab adds to TRL's SFTTrainer (and its DPO / ORPO / KTO / GRPO trainers): the settings beside
a notebook's knobs, checkpoints that are whole or absent, a resume that keeps the first try's numerics, LoRA+,
the packing check, live progress, opt-in experiment tracking, and data-parallel training under torchrun."""

from loralab.train.checkpoints import checkpoint_step, resume_as_trained, resume_checkpoint, whole_checkpoints
from loralab.train.loraplus import loraplus_optimizer
from loralab.train.packing import keep_rows_apart
from loralab.train.preference_trainer import build_preference_trainer
from loralab.train.tracking import log_run_summary, point_tracker_at
from loralab.train.trainer import build_trainer, run_callbacks, trainer_settings
from loralab.train.workers import train_in_workers

__all__ = ["build_preference_trainer", "build_trainer", "checkpoint_step", "keep_rows_apart", "log_run_summary",
           "loraplus_optimizer", "point_tracker_at", "resume_as_trained", "resume_checkpoint", "run_callbacks",
           "train_in_workers", "trainer_settings", "whole_checkpoints"]
