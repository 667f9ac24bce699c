"""The column map's prompt template: which columns of a row it names, checked before any file is read.

    from loralab.params.prompt_template import template_columns, fill_template
    template_columns("Classify this review: {text}")                  # ["text"]
    fill_template("Classify this review: {text}", {"text": "Loved it"})  # "Classify this review: Loved it"

A template is text with column names in braces, as in Python's ``str.format`` (``{{`` and ``}}`` are
literal braces); a name is looked up as it is written, so ``{review text}`` or ``{meta.title}`` name
those columns. Conversions and format specs (``{text!r}``, ``{score:.2f}``) are refused: a column's
value goes into the prompt as the text it holds. Used by ``loralab.params.run_config`` (the checks
that need no file) and ``loralab.data.column_map`` (filling the prompt of each row).
"""

from __future__ import annotations

import math
import string
from typing import Any


def _pieces(template: str) -> list[tuple[str, str | None]]:
    """(literal text, column name or None) pieces of ``template``; ValueError with one sentence on a bad brace."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:  # "Single '}' encountered in format string", "expected '}' before end of string"
        raise ValueError(f"prompt_template {template!r} has an unmatched brace ({error}): write each column as "
                         "{name}, and a literal brace as {{ or }}") from None
    pieces = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (spec or conversion):
            written = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise ValueError(f"prompt_template writes {written}: name a column as {{{name}}} alone (no conversion "
                             "or format spec); its value goes into the prompt as the text it holds")
        if name is not None and not name.strip():
            raise ValueError(f"prompt_template {template!r} has an empty {{}}: write a column name in it, e.g. "
                             "{text}, or {{}} for literal braces")
        pieces.append((literal, name))
    return pieces


def template_columns(template: str) -> list[str]:
    """The columns ``template`` names, in order, each once; ValueError when it names none or is malformed."""
    columns = list(dict.fromkeys(name for _, name in _pieces(template) if name is not None))
    if not columns:
        raise ValueError(f"prompt_template {template!r} names no column, so every prompt would be the same text: "
                         "write the columns in braces, e.g. 'Classify this review: {text}'")
    return columns


def cell_text(value: Any) -> str:
    """A row's value as the text a prompt holds: '' for an empty cell (None, NaN), else its text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else str(value)


def fill_template(template: str, row: dict[str, Any]) -> str:
    """``template`` with each ``{column}`` replaced by the row's value (KeyError for a column the row lacks)."""
    return "".join(literal + (cell_text(row[name]) if name is not None else "") for literal, name in _pieces(template))
