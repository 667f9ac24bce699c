"""The embedded task's score: does each reply parse as one JSON object of the dataset's shape?

A program can check that shape, which makes the task a clean demonstration that the adapter taught
the model something it did not do before::

    from loralab.eval.json_shape import parse_reply
    parse_reply('{"topic": "geography", "answer": "Lima"}')     # {'topic': 'geography', 'answer': 'Lima'}
    parse_reply("The capital of Peru is Lima.")                  # None

The scorers ``json_shape``, ``json_topic`` and ``json_answer`` (``loralab.eval.scorers``) use it.
"""

from __future__ import annotations

import json

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
