"""Local data files other than JSON Lines (CSV, TSV, Parquet, JSON, Arrow), read by the ``datasets`` library.

    from loralab.data.table_files import is_table_file, read_table
    table = read_table("reviews.csv")   # table.columns, table.rows: [(row number, {column: value}), ...]
    table.where(5)                      # "reviews.csv row 5 (the header is row 1)": a row as a spreadsheet shows it

Each row keeps the number a person finds it by: in a CSV or TSV file the header is row 1 and the first
data row is row 2, as a spreadsheet shows it; in Parquet, Arrow and JSON files rows count from 1.
CSV cells are read as the text they hold (``007`` stays ``007``, ``NA`` stays ``NA``; an empty cell is
''), every column as text. An Excel workbook, a text or YAML file is refused in one line saying what to give instead. JSON
Lines files (.jsonl) are read by ``loralab.data.jsonl_files.read_numbered_jsonl``, which names lines.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.data.errors import DatasetError

# suffix -> (datasets' builder, its keyword arguments)
_CSV = {"keep_default_na": False, "skip_blank_lines": False, "encoding": "utf-8-sig"}
TABLE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", _CSV),
    ".tsv": ("csv", {**_CSV, "delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".json": ("json", {}),
    ".arrow": ("arrow", {}),
}
REFUSED_SUFFIXES = {
    ".xlsx": "an Excel workbook: save it as CSV (File > Save As > CSV UTF-8) and give the .csv file",
    ".xls": "an Excel workbook: save it as CSV (File > Save As > CSV UTF-8) and give the .csv file",
    ".ods": "a spreadsheet: save it as CSV and give the .csv file",
    ".txt": "plain text, with no columns: give a .jsonl, .csv, .tsv, .parquet, .json or .arrow file",
    ".yaml": "YAML, which loralab does not read as data (a params file?): give a .jsonl, .csv, .tsv, .parquet, "
             ".json or .arrow file",
    ".yml": "YAML, which loralab does not read as data (a params file?): give a .jsonl, .csv, .tsv, .parquet, "
            ".json or .arrow file",
}
READABLE = ".jsonl, .csv, .tsv, .parquet, .json, .arrow"


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def is_table_file(name: str) -> bool:
    """True when ``name`` ends like a file this module reads (.csv, .tsv, .parquet, .json, .arrow)."""
    return _suffix(name) in TABLE_FORMATS


def is_local_data_file(name: str) -> bool:
    """True when ``name`` is a local data file rather than a hub dataset id: a known data suffix, or a file
    that exists."""
    return name.endswith(".jsonl") or _suffix(name) in TABLE_FORMATS or _suffix(name) in REFUSED_SUFFIXES \
        or os.path.isfile(name)


@dataclass
class Table:
    """The rows of one file, each with the number a person finds it by, and the file's columns."""

    path: str
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @property
    def spreadsheet(self) -> bool:
        """CSV and TSV: a spreadsheet shows the header as row 1."""
        return _suffix(self.path) in (".csv", ".tsv")

    def where(self, number: int) -> str:
        """How an error names row ``number``."""
        return f"{self.path} row {number} ({'the header is row 1' if self.spreadsheet else 'counting rows from 1'})"


def refuse_unreadable(name: str) -> None:
    """DatasetError for a local file loralab does not read as data (a workbook, text, YAML, an unknown suffix)."""
    suffix = _suffix(name)
    if suffix in REFUSED_SUFFIXES:
        raise DatasetError(f"dataset {name!r} is {REFUSED_SUFFIXES[suffix]}.")
    if suffix not in TABLE_FORMATS and not name.endswith(".jsonl"):
        raise DatasetError(f"dataset {name!r} is a file loralab does not know how to read (suffix "
                           f"{suffix or 'none'!r}): give a {READABLE} file, named with its suffix.")


def csv_header(path: Path, delimiter: str) -> list[str]:
    """The column names in the first row of a CSV/TSV file; DatasetError for an empty, repeated or missing name."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), [])
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not UTF-8 text (byte {error.start}); save it as CSV UTF-8.") from None
    except csv.Error as error:
        raise DatasetError(f"{path} row 1 (the header) could not be read as CSV ({error}).") from None
    if not header:
        raise DatasetError(f"{path} is empty: its first row should name the columns, e.g. text,label.")
    for i, column in enumerate(header, 1):
        if not column.strip():
            raise DatasetError(f"{path} row 1 (the header): column {i} has no name; name every column.")
        if header.index(column) != i - 1:
            raise DatasetError(f"{path} row 1 (the header): the column name {column!r} is there twice; name each "
                               "column once.")
    return header


def has_data_rows(path: Path, delimiter: str) -> bool:
    """True when a CSV/TSV file holds a non-blank row after its header (reads up to that row only)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = csv.reader(handle, delimiter=delimiter)
        next(rows, None)
        return any(any(cell.strip() for cell in row) for row in rows)


def _blank(row: dict[str, Any]) -> bool:
    return all(value is None or value == "" for value in row.values())


def read_table(name: str) -> Table:
    """Every row of a CSV, TSV, Parquet, JSON or Arrow file; DatasetError (one line) for a file that cannot be read.

    Fully blank CSV lines are skipped but counted, so the numbers stay those a spreadsheet shows.
    """
    refuse_unreadable(name)
    path = Path(name).expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise DatasetError(f"dataset file {name} does not exist{where}; give the path of a {READABLE} file "
                           "(loralab run reads it from where you ran the command), or an absolute one.")
    builder, options = TABLE_FORMATS[_suffix(name)]
    import datasets

    if builder == "csv":  # every column as text: the cells a spreadsheet shows, not numbers pandas guessed
        header = csv_header(path, options.get("delimiter", ","))
        if not has_data_rows(path, options.get("delimiter", ",")):
            return Table(name, header, [])  # datasets refuses a header alone ("corresponds to no data")
        options = {**options, "features": datasets.Features({column: datasets.Value("string") for column in header})}

    progress_was_on, verbosity = datasets.utils.logging.is_progress_bar_enabled(), datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # a parser's own ERROR log would repeat our one line
    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as error:  # noqa: BLE001  parser errors (pyarrow, pandas, datasets) come in many types
        reason = " ".join(str(error).split())[:300] or type(error).__name__
        raise DatasetError(f"{name} could not be read as {builder.upper()} ({reason}); check that the file is "
                           f"what its suffix says ({READABLE}).") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
        if progress_was_on:
            datasets.enable_progress_bars()
    first = 2 if _suffix(name) in (".csv", ".tsv") else 1
    rows = [(number, row) for number, row in enumerate(table, first) if not _blank(row)]
    return Table(name, list(table.column_names), rows)
