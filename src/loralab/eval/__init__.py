"""Eval: held-out answers generated and scored, before and after training."""

from loralab.eval.evaluate import evaluate
from loralab.eval.json_shape import score_replies

__all__ = ["evaluate", "score_replies"]
