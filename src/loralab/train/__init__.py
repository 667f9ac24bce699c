"""Train: TRL's SFTTrainer built from a RunConfig, with checkpoints that are whole or absent."""

from loralab.train.checkpoints import checkpoint_step, resume_checkpoint
from loralab.train.trainer import build_trainer

__all__ = ["build_trainer", "checkpoint_step", "resume_checkpoint"]
