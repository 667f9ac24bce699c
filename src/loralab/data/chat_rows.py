"""Chat datasets: read, normalise to ``messages``, and split into prompt / completion for TRL.

    from loralab.data.chat_rows import load_chat_rows, to_prompt_completion
    rows = load_chat_rows(cfg.dataset, cfg.dataset_split)        # list of {"messages": [...]}
    train_ds = to_prompt_completion(rows)                          # datasets.Dataset

Training on prompt/completion pairs makes TRL's ``SFTTrainer`` compute the loss on the assistant's
final answer only (``completion_only_loss``): the model learns to answer, not to echo questions.
Recognised row formats: ``messages`` (OpenAI style), ``conversations`` with ``from``/``value``
(ShareGPT) and ``instruction``/``input``/``output`` (Alpaca); anything else is refused with an
example of each. A row with no assistant answer, an empty answer, unknown roles or non-text content
(images, audio) is refused naming its row; a .jsonl file holds one object per line (a line that holds a
JSON array or a bare value is refused saying so). Other local files (CSV, TSV, Parquet, JSON, Arrow) are
read by ``loralab.data.sources``, and any file's own columns are mapped to a conversation by
``loralab.data.column_map`` (``prompt_template``, ``answer_column``).
Rows longer than ``max_seq_length`` are counted and truncated or dropped by ``loralab.data.row_lengths``.
"""

from __future__ import annotations

from typing import Any

from loralab.data.column_map import ColumnMap, refuse_unmapped
from loralab.data.errors import DatasetError
from loralab.data.errors import short_repr as _short
from loralab.data.json_answers import data_file
from loralab.data.short_answers import short_answer_rows
from loralab.data.sources import (  # noqa: F401  (read here by the rest of loralab and its tests)
    embedded_split_rows,
    read_jsonl,
    read_numbered_jsonl,
    read_source,
    rows_from_jsonl_text,
)
from loralab.params.run_config import EMBEDDED_DATASET

ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}


EXPECTED_FORMATS = (
    '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}, '
    '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}, '
    '{"instruction": "Say hello", "input": "", "output": "Hello"}'
)
EMBEDDED_SHORT_ANSWERS = "embedded/short-answers"


def _text_content(content: Any, where: str) -> str:
    """Message content as text: a string, or a list of text parts ({"type": "text", "text": ...})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):
        kinds = {p.get("type") if isinstance(p.get("type"), str) else repr(p.get("type")) for p in content}
        if kinds == {"text"} and all(isinstance(p.get("text"), str) for p in content):
            return "".join(p["text"] for p in content)
        raise DatasetError(f"{where}: content has {sorted(kinds)} parts; loralab trains on text only, so give "
                           "the content as a string (or text parts only).")
    raise DatasetError(f"{where}: content must be text, got {_short(content)}.")


def normalise_row(row: dict, where: str) -> dict:
    """One row in any recognised format -> ``{"messages": [{"role", "content"}, ...]}``."""
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}.")
    if "messages" in row:
        messages = row["messages"]
    elif "conversations" in row:
        turns = row["conversations"]
        if not isinstance(turns, list):
            raise DatasetError(f"{where}: 'conversations' must be a list of {{from, value}} turns.")
        messages = []
        for turn in turns:
            source = turn.get("from") if isinstance(turn, dict) else None
            role = _SHAREGPT_ROLES.get(source) if isinstance(source, str) else None
            if role is None:
                raise DatasetError(f"{where}: ShareGPT turn {_short(turn)} needs 'from' in "
                                   f"{sorted(_SHAREGPT_ROLES)}.")
            messages.append({"role": role, "content": turn.get("value")})
    elif "instruction" in row and "output" in row:
        extra = row.get("input")
        if not isinstance(row["instruction"], str) or not isinstance(extra, str | None):
            raise DatasetError(f"{where}: Alpaca 'instruction' and 'input' must be text, got "
                               f"{_short(row['instruction'])} and {_short(extra)}.")
        prompt = row["instruction"] + (f"\n\n{extra}" if extra else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    else:
        raise DatasetError(f"{where}: unknown row format with keys {sorted(map(str, row))[:20]}. "
                           f"Expected one of: {EXPECTED_FORMATS}; or map your keys with prompt_template "
                           "and answer_column.")
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: 'messages' is missing or empty; give at least a user and an assistant turn.")
    clean = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in ROLES:
            raise DatasetError(f"{where}, message {i}: role must be one of {ROLES}, got {_short(message)}.")
        content = _text_content(message.get("content"), f"{where}, message {i}")
        clean.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in clean):
        raise DatasetError(f"{where}: the conversation has no assistant turn; add the answer to learn as "
                           '{"role": "assistant", "content": "..."} at the end.')
    if clean[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: the conversation must end with an assistant turn to learn from.")
    if not clean[-1]["content"].strip():
        raise DatasetError(f"{where}: the last assistant answer is empty; there is nothing to learn from it.")
    return {"messages": clean}


def embedded_rows(dataset: str, split: str) -> list[Any]:
    """Rows of a dataset shipped inside loralab (``train``, ``eval`` or a slice: ``loralab.data.sources``)."""
    readers = {EMBEDDED_DATASET: lambda s: read_jsonl(data_file(s)), EMBEDDED_SHORT_ANSWERS: short_answer_rows}
    if dataset not in readers:
        raise DatasetError(f"{dataset!r} is not an embedded dataset; the embedded ones are {', '.join(readers)} "
                           "(or give a .jsonl path or a hub dataset id).")
    return embedded_split_rows(dataset, split, readers[dataset])


def load_chat_rows(dataset: str, split: str = "train", columns: ColumnMap | None = None) -> list[dict]:
    """Rows of the embedded dataset, a local file or a hub dataset, normalised to messages.

    ``columns`` (``loralab.data.column_map``) maps a row's own columns to a conversation; without it the
    rows must be in a chat format. A bad row is named as a person finds it: ``data.jsonl line 4`` (blank
    lines count), ``reviews.csv row 5 (the header is row 1)``, ``org/data[train] row 4`` (counting from 1).
    """
    found = read_source(dataset, split, embedded_rows)
    if not found.rows:
        raise DatasetError(f"{found.name} has no rows.")
    if columns is not None:
        if found.columns is not None:
            columns.check_columns(found.columns, found.name)
        return [columns.chat_row(row, found.where(number)) for number, row in found.rows]
    if found.columns is not None:
        refuse_unmapped(found.name, found.columns)
    return [normalise_row(row, found.where(number)) for number, row in found.rows]


def to_prompt_completion(rows: list[dict]):
    """A ``datasets.Dataset`` of conversational prompt/completion pairs (last assistant turn = completion)."""
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]
    )
