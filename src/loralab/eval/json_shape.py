"""The embedded task's score: does each reply parse as one JSON object of the dataset's shape?

A program can check that shape, which makes the task a clean demonstration that the adapter taught
the model something it did not do before::

    from loralab.eval.json_shape import score_replies
    result = score_replies(replies, eval_rows)      # result.shape_score in [0, 1]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from loralab.data.json_answers import TOPICS

KEYS = ("topic", "answer")


def parse_reply(text: str) -> dict | None:
    """The reply as a dict when it is exactly one JSON object with the task's shape, else None.

    Shape: keys exactly ``topic`` and ``answer``; ``topic`` one of TOPICS; ``answer`` a non-empty string.
    """
    try:
        obj = json.loads(text.strip())
    except (json.JSONDecodeError, ValueError):
        return None
    if not isinstance(obj, dict) or set(obj) != set(KEYS):
        return None
    if obj["topic"] not in TOPICS or not isinstance(obj["answer"], str) or not obj["answer"].strip():
        return None
    return obj


@dataclass
class TaskScore:
    """Scores of a list of replies against their rows."""

    shape_score: float  # share of replies that are a JSON object of the right shape
    topic_accuracy: float  # share with the right topic
    answer_accuracy: float  # share with the exact expected answer (a 135M model gets few facts right)
    n: int
    rows: list[dict] = field(default_factory=list)  # per-example table for the notebook


def score_replies(replies: list[str], rows: list[dict]) -> TaskScore:
    """Score generated replies; ``rows`` are the dataset rows they answer, in the same order."""
    if len(replies) != len(rows):
        raise ValueError(f"Got {len(replies)} replies for {len(rows)} questions; they must pair up.")
    table = []
    for reply, row in zip(replies, rows):
        parsed = parse_reply(reply)
        table.append({
            "question": row["messages"][0]["content"],
            "reply": reply,
            "shape_ok": parsed is not None,
            "topic_ok": parsed is not None and parsed["topic"] == row["topic"],
            "answer_ok": parsed is not None and parsed["answer"].strip().lower() == row["answer"].lower(),
        })
    n = len(table)

    def share(key: str) -> float:
        return sum(r[key] for r in table) / n if n else 0.0

    return TaskScore(share("shape_ok"), share("topic_ok"), share("answer_ok"), n, table)
