"""Train: TRL's SFTTrainer (and DPO / ORPO / KTO trainers) built from a config, with checkpoints that are whole
or absent, live progress, and opt-in experiment tracking."""

from loralab.train.checkpoints import checkpoint_step, resume_checkpoint
from loralab.train.preference_trainer import build_preference_trainer
from loralab.train.tracking import log_run_summary, point_tracker_at
from loralab.train.trainer import build_trainer

__all__ = ["build_preference_trainer", "build_trainer", "checkpoint_step", "log_run_summary", "point_tracker_at",
           "resume_checkpoint"]
