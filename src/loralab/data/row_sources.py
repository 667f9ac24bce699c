"""Where a dataset's rows come from: an embedded set, a local file of any kind, or a hub dataset.

    from loralab.data.row_sources import read_source
    found = read_source("reviews.csv", "train", embedded_rows)    # embedded_rows: the caller's embedded sets
    for number, row in found.rows:
        found.where(number)        # "reviews.csv row 2 (the header is row 1)", "d.jsonl line 4", "org/d[train] row 4"
    found.columns                  # a table's or hub dataset's columns; None for JSON Lines and embedded rows

The readers of chat rows (``loralab.data.chat_rows``) and of preference rows
(``loralab.data.preference_rows``) both start here, so every source names its rows the same way:
JSON Lines by the line a text editor shows, CSV/TSV as a spreadsheet shows them (header row 1),
Parquet/Arrow/JSON and hub datasets counting rows from 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loralab.data.jsonl_files import read_numbered_jsonl
from loralab.data.table_files import is_local_data_file, read_table
from loralab.model.hub_token import token_kwargs
from loralab.params.names import is_embedded


@dataclass
class Source:
    """The numbered rows of one dataset, and how an error names one of them."""

    name: str  # e.g. "reviews.csv", "org/data[train]"
    rows: list[tuple[int, Any]]
    columns: list[str] | None  # None: rows may differ in their keys (JSON Lines, embedded sets)
    where: Callable[[int], str]


def read_source(dataset: str, split: str, embedded: Callable[[str, str], list[Any]]) -> Source:
    """Rows of ``dataset``: ``embedded(dataset, split)`` for embedded/<name>, a local file (its own split),
    or the hub dataset's ``split``."""
    if is_embedded(dataset):
        name = f"{dataset}[{split}]"
        return Source(name, list(enumerate(embedded(dataset, split), 1)), None, lambda n: f"{name} row {n}")
    if dataset.endswith(".jsonl"):
        return Source(dataset, read_numbered_jsonl(dataset), None, lambda n: f"{dataset} line {n}")
    if is_local_data_file(dataset):
        table = read_table(dataset)
        return Source(dataset, table.rows, table.columns, table.where)
    from datasets import load_dataset

    rows = load_dataset(dataset, split=split, **token_kwargs())
    name = f"{dataset}[{split}]"
    columns = getattr(rows, "column_names", None)
    return Source(name, list(enumerate(rows, 1)), None if columns is None else list(columns), lambda n: f"{name} row {n}")
