"""The rows of the local harness task loralab_general_knowledge: questions.jsonl beside this file.

lm-evaluation-harness calls ``load_questions`` through the task YAML (``custom_dataset: !function
rows.load_questions``), with the task's metadata as keyword arguments, and reads its ``test`` split.
"""

from __future__ import annotations

import json
from pathlib import Path

QUESTIONS = Path(__file__).with_name("questions.jsonl")


def load_questions(**_metadata):
    """A DatasetDict with one split, ``test``: question, choices (four strings), answer (index of the right one)."""
    import datasets

    rows = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})
