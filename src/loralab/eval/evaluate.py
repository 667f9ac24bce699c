"""Evaluate a model on the held-out rows: teacher-forced loss, then greedy replies scored by the chosen scorers.

    from loralab.eval.evaluate import evaluate, eval_metrics
    before = evaluate(model, tokenizer, data, trainer, cfg.max_new_tokens, label="before")
    ...                                            # trainer.train()
    after = evaluate(model, tokenizer, data, trainer, cfg.max_new_tokens, label="after")
    print(after.summary())                         # held-out loss 1.02 (ppl 2.8); json_shape 0.97, ...
    metrics.update(eval_metrics(before, after))    # eval_loss_before/after, eval_scores_before/after, ...

The loss comes from the trainer's own evaluation loop (``loralab.train.trainer.heldout_loss``), so
it is computed exactly as the training loss is: completion tokens only. Replies are greedy, so the
same model, rows and ``max_new_tokens`` give the same replies and scores wherever they are computed
(``loralab eval`` reproduces a run's after-scores).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from loralab.eval.prepare import RunData, reference
from loralab.eval.scorers import Scorer, score_replies
from loralab.model.generation import generate_replies
from loralab.train.trainer import heldout_loss


@dataclass
class EvalResult:
    """What one model scored on the held-out rows."""

    label: str
    loss: float | None = None
    perplexity: float | None = None
    scores: dict[str, float] = field(default_factory=dict)  # mean per scorer
    failures: dict[str, int] = field(default_factory=dict)  # rows on which a scorer raised (scored 0)
    errors: dict[str, str] = field(default_factory=dict)  # the first error message per failing scorer
    replies: list[str] = field(default_factory=list)
    per_row: list[dict[str, float]] = field(default_factory=list)

    @property
    def primary(self) -> float | None:
        """The first scorer's mean score (None without scorers): ``eval_score_before/after`` in metrics.json."""
        return next(iter(self.scores.values()), None)

    def summary(self) -> str:
        """One line: held-out loss and every score."""
        parts = []
        if self.loss is not None:
            parts.append(f"held-out loss {self.loss:.3f} (perplexity {self.perplexity:.2f})")
        if self.scores:
            parts.append(", ".join(f"{name} {value:.2f}" for name, value in self.scores.items())
                         + f" on {len(self.replies)} prompts")
        failed = {n: c for n, c in self.failures.items() if c}
        if failed:
            parts.append(f"scorer failures {failed} (first: {next(iter(self.errors.values()))})")
        return f"{self.label}: " + ("; ".join(parts) if parts else "no held-out rows")


def score_model(model, tokenizer, rows: list[dict], scorers: list[Scorer], max_new_tokens: int,
                label: str) -> EvalResult:
    """Greedy replies to the prompts of ``rows``, scored against their references."""
    result = EvalResult(label)
    if not scorers or not rows:
        return result
    result.replies = generate_replies(model, tokenizer, [row["messages"][:-1] for row in rows], max_new_tokens)
    table = score_replies(scorers, result.replies, [reference(row) for row in rows])
    result.scores, result.failures, result.errors, result.per_row = table.means, table.failures, table.errors, table.rows
    return result


def evaluate(model, tokenizer, data: RunData, trainer=None, max_new_tokens: int = 48,
             label: str = "after") -> EvalResult:
    """Held-out loss (through ``trainer``, when given) and the scorers' means on ``data.scored_rows``."""
    result = score_model(model, tokenizer, data.scored_rows, data.scorers, max_new_tokens, label)
    if trainer is not None:
        loss = heldout_loss(trainer)
        result.loss, result.perplexity = loss["eval_loss"], loss["eval_perplexity"]
    return result


def eval_losses(log_history: list[dict]) -> list[dict]:
    """``[{"step": N, "eval_loss": x}, ...]``: the held-out losses the trainer logged, one per step.

    The after-training evaluation logs a second entry at the last step (the same model): kept once.
    """
    by_step = {h["step"]: h["eval_loss"] for h in log_history if "eval_loss" in h}
    return [{"step": step, "eval_loss": loss} for step, loss in by_step.items()]


def eval_metrics(before: EvalResult, after: EvalResult, data: RunData | None = None) -> dict:
    """The metrics.json keys of a before/after evaluation (docs/run-folder.md lists them)."""
    metrics = {
        "eval_loss_before": before.loss, "eval_loss_after": after.loss,
        "eval_perplexity_before": before.perplexity, "eval_perplexity_after": after.perplexity,
        "eval_score_before": before.primary, "eval_score_after": after.primary,
        "eval_scores_before": before.scores, "eval_scores_after": after.scores,
        "eval_scorer_failures": {name: before.failures.get(name, 0) + after.failures.get(name, 0)
                                 for name in after.failures},
        "eval_examples": len(after.replies),
    }
    if data is not None:
        metrics |= {"eval_rows": len(data.eval), "eval_rows_leaked": len(data.splits.leaked),
                    "eval_source": data.splits.source}
    return metrics


def examples_table(rows: list[dict], results: list[EvalResult]) -> list[dict]:
    """One entry per scored held-out row: the prompt, the reference, each model's reply and scores."""
    table = []
    for i, row in enumerate(rows):
        entry = {"prompt": row["messages"][-2]["content"] if len(row["messages"]) > 1 else "",
                 "reference": reference(row)}
        for result in results:
            if i < len(result.replies):
                entry[result.label] = result.replies[i]
                entry[f"scores_{result.label}"] = result.per_row[i]
        table.append(entry)
    return table


def side_by_side(rows: list[dict], results: list[EvalResult], n: int = 3, width: int = 120):
    """A DataFrame of the first ``n`` scored prompts: reference and each model's reply (cut to ``width``)."""
    import pandas as pd

    cut = (lambda text: text if len(text) <= width else text[: width - 3] + "...")
    table = [{"prompt": cut(e["prompt"]), "reference": cut(e["reference"]),
              **{r.label: cut(e.get(r.label, "")) for r in results}} for e in examples_table(rows[:n], results)]
    return pd.DataFrame(table)


def write_eval_examples(path, rows: list[dict], results: list[EvalResult]):
    """``eval_examples.jsonl``: one JSON line per scored held-out prompt (see :func:`examples_table`)."""
    import json
    from pathlib import Path

    path = Path(path)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples_table(rows, results)),
                    encoding="utf-8")
    return path
