"""Chat datasets: read, normalise to ``messages``, and split into prompt / completion for TRL.

    from loralab.chat_data import load_chat_rows, to_prompt_completion
    rows = load_chat_rows(cfg.dataset, cfg.dataset_split)        # list of {"messages": [...]}
    train_ds = to_prompt_completion(rows)                          # datasets.Dataset

Training on prompt/completion pairs makes TRL's ``SFTTrainer`` compute the loss on the assistant's
final answer only (``completion_only_loss``): the model learns to answer, not to echo questions.
Recognised row formats: ``messages`` (OpenAI style), ``conversations`` with ``from``/``value``
(ShareGPT) and ``instruction``/``input``/``output`` (Alpaca).
"""

from __future__ import annotations

import json
from pathlib import Path

from loralab.config import EMBEDDED_DATASET
from loralab.json_task import data_file

ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system"}


class DatasetError(ValueError):
    """A dataset row or file that cannot be used; the message names the row and what to fix."""


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
            role = _SHAREGPT_ROLES.get(turn.get("from")) if isinstance(turn, dict) else None
            if role is None:
                raise DatasetError(f"{where}: ShareGPT turn {turn!r} needs 'from' in {sorted(_SHAREGPT_ROLES)}.")
            messages.append({"role": role, "content": turn.get("value")})
    elif "instruction" in row and "output" in row:
        prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": row["output"]}]
    else:
        raise DatasetError(
            f"{where}: unknown row format with keys {sorted(row)}. Expected one of: "
            '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}, '
            '{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}, '
            '{"instruction": "Say hello", "input": "", "output": "Hello"}.'
        )
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: 'messages' is missing or empty; give at least a user and an assistant turn.")
    clean = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise DatasetError(f"{where}, message {i}: role must be one of {ROLES}, got {message!r}.")
        if not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}, message {i}: content must be text, got {message.get('content')!r}.")
        clean.append({"role": message["role"], "content": message["content"]})
    if clean[-1]["role"] != "assistant":
        raise DatasetError(f"{where}: the conversation must end with an assistant turn to learn from.")
    return {"messages": clean}


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a JSON Lines file; a line that is not JSON is reported with its number."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise DatasetError(f"{path}, line {number}: not JSON ({error.msg}); "
                                   "the file must hold one JSON object per line.") from None
    return rows


def load_chat_rows(dataset: str, split: str = "train") -> list[dict]:
    """Rows of the embedded dataset, a local .jsonl file, or a hub dataset, normalised to messages."""
    if dataset == EMBEDDED_DATASET:
        source, raw = f"{dataset}[{split}]", read_jsonl(data_file(split))
    elif dataset.endswith(".jsonl"):
        source, raw = dataset, read_jsonl(dataset)
    else:
        from datasets import load_dataset

        source, raw = f"{dataset}[{split}]", list(load_dataset(dataset, split=split))
    if not raw:
        raise DatasetError(f"{source} has no rows.")
    return [normalise_row(row, f"{source} row {i}") for i, row in enumerate(raw)]


def to_prompt_completion(rows: list[dict]):
    """A ``datasets.Dataset`` of conversational prompt/completion pairs (last assistant turn = completion)."""
    from datasets import Dataset

    return Dataset.from_list(
        [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]
    )
