"""Eval: held-out rows checked before the model loads, held-out loss, scorers of greedy replies, side by side."""

from loralab.eval.evaluate import eval_losses, eval_metrics, evaluate, side_by_side, write_eval_examples
from loralab.eval.prepare import prepare_run_data
from loralab.eval.scorers import parse_scorers, score_replies

__all__ = ["eval_losses", "eval_metrics", "evaluate", "parse_scorers", "prepare_run_data", "score_replies",
           "side_by_side", "write_eval_examples"]
