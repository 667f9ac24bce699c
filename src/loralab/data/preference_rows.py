"""Preference datasets for DPO, ORPO and KTO: read, check and normalise to TRL's conversational form.

    from loralab.data.preference_rows import load_preference_rows
    rows = load_preference_rows(cfg.dataset, cfg.dataset_split, "dpo")  # [{"prompt", "chosen", "rejected"}]
    train_ds = datasets.Dataset.from_list(rows)                         # for DPOTrainer / ORPOTrainer
    kto_rows = load_preference_rows(cfg.dataset, cfg.dataset_split, "kto")  # KTO: prompt/completion/label

Every row comes out in one form: ``prompt`` a list of chat messages ending with a user turn, and
``chosen`` / ``rejected`` (or KTO's ``completion``) a list holding one assistant message. Accepted rows:
``{"prompt", "chosen", "rejected"}`` with text or chat messages, the implicit-prompt form
``{"chosen": [messages], "rejected": [messages]}`` (their shared opening turns become the prompt), and for
KTO ``{"prompt", "completion", "label": true/false}``; KTO also takes paired rows, each as two rows
(chosen: label true, rejected: label false). A row with no prompt, an empty reply, the same reply chosen
and rejected, a label that is not true/false, unknown roles or non-text content is refused naming its
row (``data.jsonl line 4``, ``org/data[train] row 4``) with an example of the expected row.
Sources: ``embedded/concise-answers`` (``loralab.data.concise_answers``), a local file (.jsonl, .csv, .tsv,
.parquet, .json, .arrow: ``loralab.data.sources``), a hub dataset id; a file's own columns are mapped
with ``prompt_template``, ``chosen_column`` and ``rejected_column`` (``loralab.data.column_map``).
"""

from __future__ import annotations

from typing import Any

from loralab.data.chat_rows import (
    ROLES,
    DatasetError,
    _short,
    _text_content,
)
from loralab.data.column_map import ColumnMap, refuse_unmapped
from loralab.data.concise_answers import concise_answer_pairs
from loralab.data.sources import embedded_split_rows, read_source

METHODS = ("dpo", "orpo", "kto")
PAIRED_METHODS = ("dpo", "orpo")
EMBEDDED_CONCISE_ANSWERS = "embedded/concise-answers"
EMBEDDED_PREFERENCE_SETS = {EMBEDDED_CONCISE_ANSWERS: concise_answer_pairs}

EXAMPLE_PAIR = ('{"prompt": "What is 2 plus 2?", "chosen": "The answer is 4.", '
                '"rejected": "Well, maybe it is 4."}')
EXPECTED_PAIRED = (
    EXAMPLE_PAIR + ", "
    '{"prompt": [{"role": "user", "content": "What is 2 plus 2?"}], '
    '"chosen": [{"role": "assistant", "content": "The answer is 4."}], '
    '"rejected": [{"role": "assistant", "content": "Well, maybe it is 4."}]}, '
    '{"chosen": [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": '
    '"The answer is 4."}], "rejected": [{"role": "user", "content": "What is 2 plus 2?"}, '
    '{"role": "assistant", "content": "Well, maybe it is 4."}]}'
)
EXPECTED_KTO = '{"prompt": "What is 2 plus 2?", "completion": "The answer is 4.", "label": true}'


def _expected(method: str) -> str:
    """Every accepted row format for ``method``, as examples."""
    if method == "kto":
        return f"{EXPECTED_KTO} (or paired rows, each used as two KTO rows: {EXPECTED_PAIRED})"
    return EXPECTED_PAIRED


def _messages(value: Any, where: str) -> list[dict]:
    """A list of chat messages with known roles and text content."""
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: expected text or a non-empty list of chat messages, "
                           f"got {_short(value)}.")
    clean = []
    for i, message in enumerate(value):
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in ROLES:
            raise DatasetError(f"{where}, message {i}: role must be one of {ROLES}, got {_short(message)}.")
        content = _text_content(message.get("content"), f"{where}, message {i}")
        clean.append({"role": role, "content": content})
    return clean


def _prompt(value: Any, where: str) -> list[dict]:
    """The prompt as chat messages: text becomes one user turn; it must end with a non-empty user turn."""
    if value is None:
        raise DatasetError(f"{where}: the row has no prompt; write the question as \"prompt\": \"...\" "
                           '(text or chat messages such as [{"role": "user", "content": "..."}]).')
    if isinstance(value, str):
        messages = [{"role": "user", "content": value}]
    else:
        messages = _messages(value, f"{where}, prompt")
    if messages[-1]["role"] != "user":
        raise DatasetError(f"{where}: the prompt must end with a user turn (the question the reply answers), "
                           f"got a {messages[-1]['role']} turn last.")
    if not messages[-1]["content"].strip():
        raise DatasetError(f"{where}: the prompt's last user turn is empty; write the question there.")
    return messages


def _reply(value: Any, where: str, field: str) -> list[dict]:
    """A reply (text, or a list holding one assistant message) as ``[{"role": "assistant", "content"}]``."""
    if isinstance(value, str):
        messages = [{"role": "assistant", "content": value}]
    else:
        messages = _messages(value, f"{where}, {field}")
        if len(messages) != 1:
            raise DatasetError(f"{where}: {field!r} must be one assistant reply to the prompt, got "
                               f"{len(messages)} messages; if it holds the whole conversation, drop "
                               "\"prompt\" and the opening turns chosen and rejected share become the "
                               "prompt.")
        if messages[0]["role"] != "assistant":
            raise DatasetError(f"{where}: {field!r} must be an assistant reply, "
                               f"got a {messages[0]['role']} turn.")
    if not messages[0]["content"].strip():
        raise DatasetError(f"{where}: {field!r} is empty; write the reply there.")
    return messages


def _split_shared_prompt(row: dict, where: str) -> tuple[list[dict], list[dict], list[dict]]:
    """The implicit-prompt form: (shared opening turns, chosen's last turn, rejected's last turn)."""
    if not isinstance(row["chosen"], list) or not isinstance(row["rejected"], list):
        raise DatasetError(f"{where}: the row has no prompt; add \"prompt\": \"...\", or give chosen and "
                           "rejected as whole conversations that open with the same user turn.")
    chosen = _messages(row["chosen"], f"{where}, chosen")
    rejected = _messages(row["rejected"], f"{where}, rejected")
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    if shared == len(chosen) == len(rejected):
        raise DatasetError(f"{where}: chosen and rejected are the same conversation; "
                           "there is nothing to prefer.")
    if shared == 0:
        raise DatasetError(f"{where}: the row has no prompt: chosen and rejected share no opening turns. "
                           "Add \"prompt\": \"...\", or start both conversations with the same user turn.")
    for field, messages in (("chosen", chosen), ("rejected", rejected)):
        if len(messages) - shared != 1:
            raise DatasetError(f"{where}: after the turns chosen and rejected share (the prompt), {field!r} "
                               f"must have exactly one assistant reply, got {len(messages) - shared} turns.")
    prompt = _prompt(chosen[:shared], where)
    return prompt, _reply(chosen[shared:], where, "chosen"), _reply(rejected[shared:], where, "rejected")


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def normalise_pair(row: dict, where: str) -> dict:
    """A paired row -> ``{"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}``."""
    if row.get("prompt") is None:
        prompt, chosen, rejected = _split_shared_prompt(row, where)
    else:
        prompt = _prompt(row["prompt"], where)
        chosen, rejected = _reply(row["chosen"], where, "chosen"), _reply(row["rejected"], where, "rejected")
    if _same_text(chosen[0]["content"], rejected[0]["content"]):
        raise DatasetError(f"{where}: chosen and rejected are the same reply; there is nothing to prefer. "
                           "Make rejected the worse reply to the same prompt.")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def normalise_kto_row(row: dict, where: str) -> dict:
    """An unpaired row -> ``{"prompt": [messages], "completion": [assistant], "label": bool}``."""
    if "completion" not in row:
        raise DatasetError(f"{where}: a KTO row needs \"completion\" (the reply) and \"label\" (true if it "
                           f"is good); expected: {EXPECTED_KTO}.")
    if "label" not in row:
        raise DatasetError(f"{where}: the row has no \"label\"; add \"label\": true for a good completion "
                           f"or false for a bad one, e.g. {EXPECTED_KTO}.")
    label = row["label"]
    if not isinstance(label, bool):
        raise DatasetError(f"{where}: \"label\" must be true (a good completion) or false (a bad one), got "
                           f"{_short(label)}; e.g. {EXPECTED_KTO}.")
    prompt = _prompt(row.get("prompt"), where)
    return {"prompt": prompt, "completion": _reply(row["completion"], where, "completion"), "label": label}


def normalise_preference_row(row: Any, where: str, method: str) -> list[dict]:
    """One row in any accepted format -> the normalised rows for ``method`` (two for a pair under KTO)."""
    if method not in METHODS:
        raise DatasetError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
    if not isinstance(row, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}.")
    paired = "chosen" in row or "rejected" in row
    unpaired = "completion" in row or "label" in row
    if paired and unpaired:
        example = EXAMPLE_PAIR if method in PAIRED_METHODS else EXPECTED_KTO
        raise DatasetError(f"{where}: the row mixes paired keys (chosen/rejected) with KTO keys "
                           f"(completion/label); give one kind per row, e.g. {example}.")
    if unpaired:
        if method in PAIRED_METHODS:
            raise DatasetError(f"{where}: these are KTO rows (prompt/completion/label): use method: kto, or "
                               f"give prompt/chosen/rejected pairs, e.g. {EXAMPLE_PAIR}.")
        return [normalise_kto_row(row, where)]
    if not paired:
        raise DatasetError(f"{where}: unknown row format with keys {sorted(map(str, row))[:20]}. "
                           f"Expected one of: {_expected(method)}.")
    for field, other in (("chosen", "rejected"), ("rejected", "chosen")):
        if field not in row:
            raise DatasetError(f"{where}: the row has {other!r} but no {field!r}; a pair needs both, "
                               f"e.g. {EXAMPLE_PAIR}.")
    pair = normalise_pair(row, where)
    if method in PAIRED_METHODS:
        return [pair]
    return [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
            {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]


def embedded_preference_rows(dataset: str, split: str) -> list[dict]:
    """Raw rows of a preference set shipped inside loralab (``train``, ``eval`` or a slice of them)."""
    if dataset not in EMBEDDED_PREFERENCE_SETS:
        raise DatasetError(f"{dataset!r} is not an embedded preference dataset; the embedded one is "
                           f"{', '.join(EMBEDDED_PREFERENCE_SETS)} (embedded/json-answers and "
                           "embedded/short-answers are chat data for SFT), or give a .jsonl path or a hub "
                           "dataset id.")
    return embedded_split_rows(dataset, split, EMBEDDED_PREFERENCE_SETS[dataset])


def load_preference_rows(dataset: str, split: str, method: str, columns: ColumnMap | None = None) -> list[dict]:
    """Rows of the embedded set, a local file, or a hub dataset, normalised for ``method``.

    ``method`` is ``dpo`` or ``orpo`` (rows ``{"prompt", "chosen", "rejected"}``) or ``kto`` (rows
    ``{"prompt", "completion", "label"}``; a paired row gives two). ``columns`` (``loralab.data.column_map``)
    maps a row's own columns to a prompt and its chosen and rejected replies. A bad row is named as a person
    finds it: ``prefs.jsonl line 4`` (blank lines count), ``prefs.csv row 5 (the header is row 1)``,
    ``org/data[train] row 4`` (counting from 1).
    """
    if method not in METHODS:
        raise DatasetError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
    found = read_source(dataset, split, embedded_preference_rows)
    if not found.rows:
        raise DatasetError(f"{found.name} has no rows; each row should look like one of: "
                           f"{_expected(method)}.")
    if columns is not None and found.columns is not None:
        columns.check_columns(found.columns, found.name)
    elif found.columns is not None:
        refuse_unmapped(found.name, found.columns, preference=True)
    rows_out = []
    for number, row in found.rows:
        where = found.where(number)
        if columns is not None:
            row = columns.preference_row(row, where)
        rows_out.extend(normalise_preference_row(row, where, method))
    return rows_out
