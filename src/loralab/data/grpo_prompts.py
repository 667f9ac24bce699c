"""Prompts for GRPO: a chat prompt per row and the reference answer rewards may compare with.

    from loralab.data.grpo_prompts import load_prompt_rows
    rows = load_prompt_rows("embedded/answer-format", "train")   # 263 rows (eval: 69)
    # {"prompt": [{"role": "user", "content": "What is the capital of Peru? Answer in one sentence ..."}],
    #  "reference": "Lima"}

GRPO needs no answers to imitate, only prompts: the model samples completions and the rewards score
them. ``embedded/answer-format`` is the embedded questions (``loralab.data.json_answers``; the eval
split shares no question, entity or number with train) with one instruction appended: answer in one
sentence that starts with "The answer is". The embedded 135M model follows it sometimes, so the
completions of one prompt differ in reward (the signal GRPO learns from). The reference is the bare
answer (``contains`` checks it inside the reply).

Other sources: a .jsonl, CSV, TSV, Parquet, JSON or Arrow file or a hub dataset whose rows hold a prompt (text or chat messages; the
column ``prompt``, ``question`` or ``messages``, or ``prompt_column``) and optionally a reference
answer (``reference``, ``answer`` or ``solution``, or ``reference_column``). Every column is kept, so a
``python:`` reward function receives them as keyword arguments, as TRL passes them. A row without a
prompt is refused naming it (``data.jsonl line 4``, ``maths.csv row 3 (the header is row 1)``).
"""

from __future__ import annotations

import json
from typing import Any

from loralab.data.chat_rows import DatasetError, _short
from loralab.data.json_answers import data_file
from loralab.data.sources import embedded_split_rows, read_source
from loralab.params.names import is_embedded

EMBEDDED_ANSWER_FORMAT = "embedded/answer-format"
INSTRUCTION = "Answer in one sentence that starts with 'The answer is'."
PROMPT_COLUMNS = ("prompt", "question", "messages")
REFERENCE_COLUMNS = ("reference", "answer", "solution")
EXAMPLE_ROW = '{"prompt": "What is 2 plus 2?", "reference": "4"}'


def answer_format_rows(split: str) -> list[dict]:
    """The embedded questions of ``split`` (train or eval) with the format instruction; reference: the answer."""
    rows = []
    for line in data_file(split).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            question = row["messages"][0]["content"]
            rows.append({"prompt": [{"role": "user", "content": f"{question} {INSTRUCTION}"}],
                         "reference": row["answer"]})
    return rows


def _prompt_messages(value: Any, where: str) -> list[dict]:
    """A prompt as chat messages ending with a user turn (text becomes one user message)."""
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                 and m.get("role") in ("system", "user", "assistant") for m in value):
        messages = [{"role": m["role"], "content": m["content"]} for m in value]
        while messages and messages[-1]["role"] == "assistant":  # a chat row's answer is not part of the prompt
            messages.pop()
        if messages and messages[-1]["role"] == "user":
            return messages
    raise DatasetError(f"{where}: the prompt is {_short(value, 80)}: write text or chat messages ending with a user "
                       f"turn, e.g. {EXAMPLE_ROW}")


def normalise_prompt_row(row: Any, where: str, prompt_column: str = "", reference_column: str = "") -> dict:
    """``{"prompt": messages, "reference": text, ...the row's other columns}``, or DatasetError naming the row."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object such as {EXAMPLE_ROW}, got {_short(row, 60)}")
    prompt_key = prompt_column or next((c for c in PROMPT_COLUMNS if c in row), None)
    if prompt_key is None or prompt_key not in row:
        wanted = repr(prompt_column) if prompt_column else " or ".join(PROMPT_COLUMNS)
        raise DatasetError(f"{where}: no prompt column ({wanted}) among {sorted(row)}; name it with prompt_column, "
                           f"e.g. {EXAMPLE_ROW}")
    reference_key = reference_column or next((c for c in REFERENCE_COLUMNS if c in row), None)
    if reference_column and reference_column not in row:
        raise DatasetError(f"{where}: no reference column {reference_column!r} among {sorted(row)}; fix "
                           "reference_column, or write reference_column: '' for none")
    out = {k: v for k, v in row.items() if k not in (prompt_key, "prompt", "reference", "completion")}
    out["prompt"] = _prompt_messages(row[prompt_key], where)
    reference = row.get(reference_key) if reference_key else None
    if reference is None and prompt_key == "messages" and row["messages"][-1].get("role") == "assistant":
        reference = row["messages"][-1]["content"]
    out["reference"] = "" if reference is None else str(reference)
    return out


def load_prompt_rows(dataset: str, split: str = "train", prompt_column: str = "",
                     reference_column: str = "", config_name: str = "") -> list[dict]:
    """Prompt rows of the embedded set, a local .jsonl file or a hub dataset (see the module docstring)."""
    if is_embedded(dataset):
        if dataset != EMBEDDED_ANSWER_FORMAT:
            raise DatasetError(f"{dataset!r} is not an embedded prompt set for GRPO; the embedded one is "
                               f"{EMBEDDED_ANSWER_FORMAT} (or give a .jsonl path or a hub dataset id).")
        return embedded_split_rows(dataset, split, answer_format_rows)
    found = read_source(dataset, split, config_name=config_name)  # a local file or a hub dataset
    if not found.rows:
        raise DatasetError(f"{found.name} has no rows.")
    return [normalise_prompt_row(row, found.where(n), prompt_column, reference_column) for n, row in found.rows]


def scored_rows(rows: list[dict]) -> list[dict]:
    """Prompt rows as chat rows whose last (assistant) turn is the reference: what ``score_model`` scores."""
    return [{"messages": row["prompt"] + [{"role": "assistant", "content": row["reference"]}]} for row in rows]
