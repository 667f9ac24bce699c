"""Your columns as a conversation: a prompt template over a row's columns, the answer column(s), a system prompt.

    from loralab.data.column_map import column_map_of
    columns = column_map_of(cfg)          # None when the rows are chat rows already
    columns.check_columns(["text", "label"], "reviews.csv")                       # a missing column: nearest one
    columns.chat_row({"text": "Loved it", "label": "positive"}, "reviews.csv row 2")
    # {"messages": [{"role": "user", "content": "Classify this review: Loved it"},
    #               {"role": "assistant", "content": "positive"}]}

Notebook 01 maps ``prompt_template`` + ``answer_column`` (+ ``system_prompt``); notebook 04 maps
``prompt_template`` + ``chosen_column`` + ``rejected_column`` (a pair; KTO takes each pair as a good and
a bad row). The same map reads the held-out rows. Every problem is one line naming the row as the file
shows it (``loralab.data.sources``): a column the file lacks (with the nearest one it has), an empty
answer, a row whose template columns are all empty. A file with neither a chat format nor a column map
is refused listing its columns and the parameters to set.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from loralab.data.errors import DatasetError
from loralab.params.prompt_template import cell_text, fill_template, template_columns

CHAT_COLUMNS = (("messages",), ("conversations",), ("instruction", "output"))
PREFERENCE_COLUMNS = (("chosen", "rejected"), ("prompt", "completion", "label"))


@dataclass(frozen=True)
class ColumnMap:
    """How one row's columns become a conversation."""

    prompt_template: str
    answers: dict[str, str]  # parameter -> column: {"answer_column": "label"} or chosen_column/rejected_column
    system_prompt: str = ""

    @property
    def prompt_columns(self) -> list[str]:
        return template_columns(self.prompt_template)

    def named_columns(self) -> list[tuple[str, str]]:
        """(column, the parameter that names it) for every column the map reads."""
        return [(column, "prompt_template") for column in self.prompt_columns] + \
            [(column, name) for name, column in self.answers.items()]

    def check_columns(self, columns: list[str], source: str) -> None:
        """DatasetError when ``source`` lacks a column the map names (the nearest column it has is named)."""
        for column, parameter in self.named_columns():
            if column not in columns:
                raise DatasetError(f"{source} has no column {column!r} ({parameter} names it){nearest(column, columns)}"
                                   f"; its columns: {', '.join(map(str, columns))}.")

    def prompt(self, row: dict[str, Any], where: str) -> list[dict]:
        """The system turn (if any) and the user turn the template makes of ``row``."""
        missing = [column for column in self.prompt_columns if column not in row]
        if missing:  # a JSON Lines row without a key: the file-level check cannot see it
            raise DatasetError(f"{where}: no column {missing[0]!r} (prompt_template names it)"
                               f"{nearest(missing[0], list(row))}; this row has: {', '.join(map(str, row))}.")
        if not any(cell_text(row[column]).strip() for column in self.prompt_columns):
            names = ", ".join(self.prompt_columns)
            raise DatasetError(f"{where}: the column{'s' * (len(self.prompt_columns) > 1)} prompt_template names "
                               f"({names}) {'are all' if len(self.prompt_columns) > 1 else 'is'} empty, so the prompt "
                               "holds no question; fill the row in or delete it.")
        turns = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return turns + [{"role": "user", "content": fill_template(self.prompt_template, row)}]

    def answer(self, row: dict[str, Any], parameter: str, where: str) -> str:
        """The text of the answer column ``parameter`` names; DatasetError when the row's cell is empty."""
        column = self.answers[parameter]
        if column not in row:
            raise DatasetError(f"{where}: no column {column!r} ({parameter} names it){nearest(column, list(row))}; "
                               f"this row has: {', '.join(map(str, row))}.")
        text = cell_text(row[column])
        if not text.strip():
            raise DatasetError(f"{where}: the {column!r} cell ({parameter}) is empty; there is nothing to learn from "
                               "the row: fill it in or delete the row.")
        return text

    def chat_row(self, row: dict[str, Any], where: str) -> dict:
        """``{"messages": [system?, user, assistant]}`` of one row (notebook 01)."""
        reply = self.answer(row, "answer_column", where)
        return {"messages": self.prompt(row, where) + [{"role": "assistant", "content": reply}]}

    def preference_row(self, row: dict[str, Any], where: str) -> dict:
        """``{"prompt": [messages], "chosen": text, "rejected": text}`` of one row (notebook 04), for
        ``loralab.data.preference_rows.normalise_preference_row`` to check and shape for the method."""
        return {"prompt": self.prompt(row, where), "chosen": self.answer(row, "chosen_column", where),
                "rejected": self.answer(row, "rejected_column", where)}


def nearest(column: str, columns: list[Any]) -> str:
    """'; nearest: 'text'' when a column resembles ``column`` (case and spacing ignored first), else ''."""
    names = [c for c in columns if isinstance(c, str)]
    folded = {c.casefold().replace(" ", "_"): c for c in names}
    key = column.casefold().replace(" ", "_")
    if key in folded:
        return f"; nearest: {folded[key]!r}"
    match = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.5)
    return f"; nearest: {folded[match[0]]!r}" if match else ""


def column_map_of(cfg: Any) -> ColumnMap | None:
    """The column map of a RunConfig or PreferenceConfig; None when ``prompt_template`` is '' (chat rows)."""
    if not cfg.prompt_template:
        return None
    return ColumnMap(cfg.prompt_template, dict(cfg.answer_columns()), cfg.system_prompt)


def refuse_unmapped(source: str, columns: list[str], preference: bool = False) -> None:
    """DatasetError when a file's columns hold no chat (or preference) format and no column map was given."""
    formats = PREFERENCE_COLUMNS if preference else CHAT_COLUMNS
    if any(all(c in columns for c in names) for names in formats):
        return
    shown = ", ".join(map(str, columns[:20])) + (" ..." if len(columns) > 20 else "")
    first = next((c for c in columns if isinstance(c, str)), "text")
    answers = "chosen_column and rejected_column (the better and the worse reply)" if preference else \
        "answer_column (the column holding the answer)"
    kinds = ("prompt/chosen/rejected or prompt/completion/label" if preference
             else "messages, conversations or instruction/output")
    raise DatasetError(f"{source} has the columns {shown} and no {kinds} column(s): set prompt_template (the user "
                       f"turn, e.g. 'Classify this review: {{{first}}}') and {answers} to map yours.")
