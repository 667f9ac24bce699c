"""Eval: held-out rows checked before the model loads, held-out loss, scorers of greedy replies, side by side,
and retention checks with lm-evaluation-harness."""

from loralab.eval.evaluate import (
    eval_losses,
    eval_metrics,
    evaluate,
    score_model,
    side_by_side,
    write_eval_examples,
)
from loralab.eval.preference import preference_metrics, reference_unchanged
from loralab.eval.prepare import prepare_preference_data, prepare_run_data
from loralab.eval.retention import compare_retention, retention_metrics, run_retention
from loralab.eval.scorers import parse_scorers, score_replies

__all__ = ["compare_retention", "eval_losses", "eval_metrics", "evaluate", "parse_scorers", "preference_metrics",
           "prepare_preference_data", "prepare_run_data", "reference_unchanged", "retention_metrics", "run_retention",
           "score_model", "score_replies", "side_by_side", "write_eval_examples"]
