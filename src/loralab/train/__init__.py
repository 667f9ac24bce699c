"""Train: TRL's SFTTrainer (and DPO / ORPO / KTO trainers) built from a config, with checkpoints that are whole
or absent, live progress, opt-in experiment tracking, and data-parallel training under torchrun."""

from loralab.train.checkpoints import checkpoint_step, resume_checkpoint
from loralab.train.preference_trainer import build_preference_trainer
from loralab.train.tracking import log_run_summary, point_tracker_at
from loralab.train.trainer import build_trainer
from loralab.train.workers import run_training

__all__ = ["build_preference_trainer", "build_trainer", "checkpoint_step", "log_run_summary", "point_tracker_at",
           "resume_checkpoint", "run_training"]
