"""A look at what the model trains on: rows as the trainer sees them, with the supervised (loss) tokens marked.

    from loralab.data.supervision_view import supervision_view
    display(supervision_view(rows[:2], tokenizer, cfg.max_seq_length))

In Jupyter the answer tokens the loss is computed on are highlighted (HTML) and the tokens ``max_seq_length``
cuts off are struck through; as text (a terminal, papermill's text output, ``print``) the supervised tokens
are wrapped in ``[[...]]`` and the cut tokens in ``<<cut: ...>>``. The token lists are
``loralab.data.supervision.row_tokens``: the same ones the checks count.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from loralab.data.supervision import row_tokens

_STYLE = {"answer": "background:#c8f7c5;color:#000", "cut": "text-decoration:line-through;color:#999"}


@dataclass(frozen=True)
class MarkedRow:
    """One row as text pieces, each ``prompt`` (no loss), ``answer`` (supervised) or ``cut`` (beyond max_seq_length)."""

    pieces: list[tuple[str, str]]  # (text, kind)
    supervised: int
    tokens: int  # after truncation

    @property
    def heading(self) -> str:
        return f"{self.supervised} of {self.tokens} tokens supervised"


def mark_row(messages: list[dict], tokenizer, max_seq_length: int | None) -> MarkedRow:
    """The row's text split where the loss mask or the truncation changes."""
    whole = row_tokens(messages, tokenizer, None)
    limit = len(whole.input_ids) if max_seq_length is None else max_seq_length
    kinds = ["cut" if i >= limit else "answer" if bit else "prompt" for i, bit in enumerate(whole.completion_mask)]
    pieces: list[tuple[str, str]] = []
    start = 0
    for end in range(1, len(kinds) + 1):
        if end == len(kinds) or kinds[end] != kinds[start]:
            pieces.append((tokenizer.decode(whole.input_ids[start:end]), kinds[start]))
            start = end
    kept = whole.completion_mask[:limit]
    return MarkedRow(pieces, sum(kept), len(kept))


@dataclass(frozen=True)
class SupervisionView:
    """Marked rows; Jupyter shows the HTML, ``str()`` the text with ``[[...]]`` markers."""

    rows: list[MarkedRow]

    def __str__(self) -> str:
        marks = {"prompt": "{}", "answer": "[[{}]]", "cut": "<<cut: {}>>"}
        blocks = [f"--- row {i}: {row.heading} ([[...]]: trained on) ---\n"
                  + "".join(marks[kind].format(text) for text, kind in row.pieces) for i, row in enumerate(self.rows, 1)]
        return "\n".join(blocks)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        def piece(text: str, kind: str) -> str:
            escaped = html.escape(text)
            return f'<span style="{_STYLE[kind]}">{escaped}</span>' if kind in _STYLE else escaped

        legend = (f'<span style="{_STYLE["answer"]}">trained on (loss)</span> · '
                  f'<span style="{_STYLE["cut"]}">cut by max_seq_length</span> · not marked: context only')
        blocks = [f"<div><b>row {i}</b>: {row.heading}<pre style='white-space:pre-wrap'>"
                  + "".join(piece(text, kind) for text, kind in row.pieces) + "</pre></div>"
                  for i, row in enumerate(self.rows, 1)]
        return f"<div>{legend}{''.join(blocks)}</div>"


def supervision_view(rows: list[dict], tokenizer, max_seq_length: int | None) -> SupervisionView:
    """The given chat rows (a few: each is shown whole) with the supervised tokens marked."""
    return SupervisionView([mark_row(row["messages"], tokenizer, max_seq_length) for row in rows])
