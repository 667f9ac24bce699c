"""Rows longer than ``max_seq_length``: counted with the model's tokenizer before training, then kept or dropped.

TRL cuts every training example at ``max_length`` tokens from the right, so an over-long row loses
the end of its answer (the part the loss is computed on), silently. Notebook 01's data cell reports
it first and applies the ``overlong_rows`` parameter::

    from loralab.data.row_lengths import fit_rows_to_length
    rows, note = fit_rows_to_length(rows, tokenizer, cfg.max_seq_length, cfg.overlong_rows)
    print(note)   # "12 of 240 rows are longer than max_seq_length=256 tokens; they will be truncated ..."

A row's length is counted as TRL's ``SFTTrainer`` counts it for a conversational prompt/completion
row: ``apply_chat_template(prompt + completion, tokenize=True)``. TRL keeps the first
``max_seq_length`` tokens, and drops a row whose prompt alone fills them (no answer token left).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from loralab.data.chat_rows import DatasetError


@dataclass
class LengthReport:
    """Token counts of every row against ``max_seq_length`` and what the policy did with the long ones."""

    max_seq_length: int
    policy: str
    lengths: list[int]
    overlong: list[int] = field(default_factory=list)  # indices of rows longer than max_seq_length
    prompt_too_long: list[int] = field(default_factory=list)  # of those, rows whose prompt alone does not fit

    @property
    def message(self) -> str:
        n, total, limit = len(self.overlong), len(self.lengths), self.max_seq_length
        longest = max(self.lengths, default=0)
        if not n:
            return f"all {total} rows fit in max_seq_length={limit} tokens (longest: {longest})."
        lost = (f" {len(self.prompt_too_long)} of them do not fit even without the answer: no answer token is "
                "left, and TRL drops them." if self.prompt_too_long else "")
        if self.policy == "drop":
            return (f"dropped {n} of {total} rows longer than max_seq_length={limit} tokens (longest: {longest}); "
                    f"{total - n} remain.{lost}")
        return (f"{n} of {total} rows are longer than max_seq_length={limit} tokens (longest: {longest}); they "
                f"will be truncated, so the end of their answers is not learned.{lost} Set overlong_rows: drop "
                f"to skip them, or raise max_seq_length.")


def _token_ids(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=generation_prompt)["input_ids"])


def conversation_lengths(rows: list[dict], tokenizer) -> list[int]:
    """Tokens of each row's whole conversation after the chat template (what the trainer truncates)."""
    return [len(_token_ids(tokenizer, row["messages"])) for row in rows]


def _prompt_length(tokenizer, messages: list[dict]) -> int:
    """Tokens before the answer starts: the common prefix of prompt (+ generation prompt) and conversation."""
    prompt, full = _token_ids(tokenizer, messages[:-1], generation_prompt=True), _token_ids(tokenizer, messages)
    n = 0
    while n < min(len(prompt), len(full)) and prompt[n] == full[n]:
        n += 1
    return n


def fit_rows_to_length(rows: list[dict], tokenizer, max_seq_length: int,
                       overlong_rows: Literal["truncate", "drop"] = "truncate") -> tuple[list[dict], str]:
    """Count rows longer than ``max_seq_length`` and keep them (truncate) or drop them; returns (rows, note).

    DatasetError when dropping would leave no row.
    """
    if overlong_rows not in ("truncate", "drop"):
        raise DatasetError(f"overlong_rows must be 'truncate' or 'drop', not {overlong_rows!r}.")
    report = LengthReport(max_seq_length, overlong_rows, conversation_lengths(rows, tokenizer))
    report.overlong = [i for i, n in enumerate(report.lengths) if n > max_seq_length]
    if report.overlong:
        report.prompt_too_long = [i for i in report.overlong
                                  if _prompt_length(tokenizer, rows[i]["messages"]) >= max_seq_length]
    if overlong_rows == "drop":
        dropped = set(report.overlong)
        kept = [row for i, row in enumerate(rows) if i not in dropped]
        if not kept:
            raise DatasetError(f"every one of the {len(rows)} rows is longer than max_seq_length={max_seq_length} "
                               f"tokens (shortest: {min(report.lengths)}); raise max_seq_length or use "
                               "overlong_rows: truncate.")
        return kept, report.message
    return rows, report.message
