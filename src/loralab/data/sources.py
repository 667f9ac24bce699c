"""Where a dataset's rows come from, each numbered as a person finds it: an embedded set, a local file, the hub.

    from loralab.data.sources import read_source
    found = read_source("reviews.csv", "train", embedded_rows)   # embedded_rows(dataset, split): the caller's sets
    for number, row in found.rows:
        found.where(number)   # "reviews.csv row 2 (the header is row 1)", "d.jsonl line 4", "org/d[train] row 4"
    found.columns             # a table's or hub dataset's columns; None for JSON Lines and embedded rows

* CSV, TSV, Parquet, JSON, Arrow files: ``datasets.load_dataset(builder, data_files=...)``. CSV and TSV cells are
  read as the text they hold (``007`` stays ``007``, ``NA`` stays ``NA``, an empty cell is ''); their header is row
  1, as a spreadsheet shows it, and is checked here first (a column with no name or a name given twice, which
  pandas would rename silently). Rows of the other kinds count from 1. A workbook, a text or YAML file is refused
  saying what to give instead.
* JSON Lines (.jsonl) are read here, one ``json.loads`` per line, numbered as a text editor shows them (blank lines
  skipped but counted): ``datasets``' JSON reader would merge the rows' keys into one schema (every row gets every
  key, so a row's format can no longer be told) and names no line. A line that is not JSON, a JSON array or a bare
  value is refused naming its line, with what to write instead; a file that is not UTF-8, naming the byte.
* ``embedded/<name>``: the caller's reader; a split is ``train``, ``eval`` or a slice in ``datasets``' split syntax
  (``ReadInstruction``): ``eval[:24]``, ``train[-200:]``, ``train[:10%]``.
* Anything else is a hub dataset: ``datasets.load_dataset(name, config, split=split)``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from loralab.data.errors import DatasetError
from loralab.data.errors import short_repr as _short
from loralab.model.hub_token import token_kwargs
from loralab.params.names import is_embedded

# suffix -> (datasets' builder, its keyword arguments)
_CSV = {"keep_default_na": False, "skip_blank_lines": False, "encoding": "utf-8-sig"}
TABLE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", _CSV),
    ".tsv": ("csv", {**_CSV, "delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".json": ("json", {}),
    ".arrow": ("arrow", {}),
}
READABLE = ".jsonl, .csv, .tsv, .parquet, .json, .arrow"
_GIVE = "give a .jsonl, .csv, .tsv, .parquet, .json or .arrow file"
_WORKBOOK = "an Excel workbook: save it as CSV (File > Save As > CSV UTF-8) and give the .csv file"
_YAML = f"YAML, which loralab does not read as data (a params file?): {_GIVE}"
REFUSED_SUFFIXES = {".xlsx": _WORKBOOK, ".xls": _WORKBOOK, ".ods": "a spreadsheet: save it as CSV and give the .csv file",
                    ".txt": f"plain text, with no columns: {_GIVE}", ".yaml": _YAML, ".yml": _YAML}
EMBEDDED_SPLITS = ("train", "eval")
Row = TypeVar("Row")


@dataclass
class Source:
    """The numbered rows of one dataset, and how an error names one of them."""

    name: str  # e.g. "reviews.csv", "org/data[train]"
    rows: list[tuple[int, Any]]
    columns: list[str] | None  # None: rows may differ in their keys (JSON Lines, embedded sets)
    where: Callable[[int], str]


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def is_local_data_file(name: str) -> bool:
    """True when ``name`` is a local data file rather than a hub dataset id: a known data suffix, or a file
    that exists."""
    return name.endswith(".jsonl") or _suffix(name) in TABLE_FORMATS or _suffix(name) in REFUSED_SUFFIXES \
        or os.path.isfile(name)


def _existing(name: str | Path, kinds: str) -> Path:
    """``name`` as a path to a file; DatasetError naming where it was looked for when there is none."""
    path = Path(name).expanduser()
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise DatasetError(f"dataset file {name} does not exist{where}; give the path of a {kinds} file "
                           "(loralab run reads it from where you ran the command), or an absolute one.")
    return path


# --- JSON Lines ------------------------------------------------------------------------------------------

def numbered_rows_from_jsonl_text(text: str, source: str) -> list[tuple[int, Any]]:
    """(line number as an editor shows it, value) for every non-blank line of JSON Lines text."""
    rows = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines(): U+2028 may sit inside a JSON string
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except (json.JSONDecodeError, RecursionError) as error:
            hint = (" It looks like one JSON array or a pretty-printed object: write one object per line "
                    "(e.g. python -c \"import json,sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]\")."
                    if number == 1 and line.strip() in ("[", "{") else "")
            reason = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
            raise DatasetError(f"{source}, line {number}: not JSON ({reason}); the file must hold one JSON "
                               f"object per line (JSON Lines).{hint}") from None
    return rows


def rows_from_jsonl_text(text: str, source: str) -> list[Any]:
    """The values of JSON Lines text; a line that is not JSON is reported with its number."""
    return [value for _, value in numbered_rows_from_jsonl_text(text, source)]


def read_numbered_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, row) of a JSON Lines file (UTF-8); DatasetError for a missing, binary or non-JSON-Lines file,
    or a line that holds no JSON object."""
    path = _existing(path, ".jsonl")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not UTF-8 text (byte {error.start}); a dataset must be a UTF-8 JSON "
                           "Lines file with one JSON object per line.") from None
    rows = numbered_rows_from_jsonl_text(text, str(path))
    for number, row in rows:
        if not isinstance(row, dict):
            raise DatasetError(f"{path} line {number}: {_not_an_object(row, path.name)}")
    return rows


def read_jsonl(path: str | Path) -> list[Any]:
    """Rows of a JSON Lines file (see :func:`read_numbered_jsonl`)."""
    return [value for _, value in read_numbered_jsonl(path)]


_JSON_KINDS = {list: "a JSON array", str: "a JSON string", int: "a number", float: "a number", bool: "true or false",
               type(None): "null"}


def _not_an_object(row: Any, name: str) -> str:
    """Why a JSON Lines row that is not an object cannot be a row, and what to do about it."""
    kind = _JSON_KINDS.get(type(row), type(row).__name__)
    if isinstance(row, list):
        return (f"expected a JSON object, got {kind} of {len(row)} item{'s' * (len(row) != 1)}: a .jsonl file holds "
                "one JSON object per line, so write each item on a line of its own, e.g. python -c \"import json,sys; "
                f"[print(json.dumps(r)) for r in json.load(sys.stdin)]\" < {name} > rows.jsonl")
    return (f"expected a JSON object, got {kind} ({_short(row, 60)}): a .jsonl file holds one JSON object per line; "
            "write each row as one object ({...}) on its own line.")


# --- CSV, TSV, Parquet, JSON, Arrow: the datasets library -------------------------------------------------

def refuse_unreadable(name: str) -> None:
    """DatasetError for a local file loralab does not read as data (a workbook, text, YAML, an unknown suffix)."""
    suffix = _suffix(name)
    if suffix in REFUSED_SUFFIXES:
        raise DatasetError(f"dataset {name!r} is {REFUSED_SUFFIXES[suffix]}.")
    if suffix not in TABLE_FORMATS and not name.endswith(".jsonl"):
        raise DatasetError(f"dataset {name!r} is a file loralab does not know how to read (suffix "
                           f"{suffix or 'none'!r}): give a {READABLE} file, named with its suffix.")


def csv_header(path: Path, delimiter: str) -> tuple[list[str], bool]:
    """(the column names in the first row of a CSV/TSV file, whether a non-blank row follows); DatasetError for an
    empty file or a column name that is empty or given twice."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = csv.reader(handle, delimiter=delimiter)
            header = next(rows, [])
            has_rows = any(any(cell.strip() for cell in row) for row in rows)
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
    return header, has_rows


def read_table(name: str) -> Source:
    """Every row of a CSV, TSV, Parquet, JSON or Arrow file; DatasetError (one line) for a file that cannot be read.

    Fully blank rows are skipped but counted, so the numbers stay those a spreadsheet shows.
    """
    refuse_unreadable(name)
    path = _existing(name, READABLE)
    builder, options = TABLE_FORMATS[_suffix(name)]
    spreadsheet = builder == "csv"  # CSV, TSV: a spreadsheet shows the header as row 1

    def where(number: int) -> str:
        return f"{name} row {number} ({'the header is row 1' if spreadsheet else 'counting rows from 1'})"

    import datasets

    if spreadsheet:  # every column as text: the cells a spreadsheet shows, not numbers pandas guessed
        header, has_rows = csv_header(path, options.get("delimiter", ","))
        if not has_rows:
            return Source(name, [], header, where)  # datasets refuses a header alone ("corresponds to no data")
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
    rows = [(number, row) for number, row in enumerate(table, 2 if spreadsheet else 1)
            if not all(value is None or value == "" for value in row.values())]
    return Source(name, rows, list(table.column_names), where)


# --- embedded sets and hub datasets -----------------------------------------------------------------------

def embedded_split_rows(dataset: str, split: str, read: Callable[[str], list[Row]]) -> list[Row]:
    """The rows ``split`` names; ``read(name)`` gives all rows of the split ``name`` (train or eval)."""
    if split in EMBEDDED_SPLITS:
        return read(split)
    from datasets import ReadInstruction

    rows = {name: read(name) for name in EMBEDDED_SPLITS}
    try:
        parts = ReadInstruction.from_spec(split).to_absolute({name: len(found) for name, found in rows.items()})
    except (ValueError, AssertionError) as error:  # an unknown split name, or a slice written wrong
        raise DatasetError(f"{dataset} has the splits 'train' and 'eval' and slices of them such as eval[:24], "
                           f"train[-200:] or train[:10%], not {split!r} ({error}).") from None
    return [row for part in parts for row in rows[part.splitname][part.from_:part.to]]


def read_source(dataset: str, split: str, embedded: Callable[[str, str], list[Any]] | None = None,
                config_name: str = "") -> Source:
    """Rows of ``dataset``: ``embedded(dataset, split)`` for embedded/<name>, a local file (its own split),
    or the hub dataset's ``split`` (of its configuration ``config_name``, if given)."""
    if is_embedded(dataset) and embedded is not None:
        name = f"{dataset}[{split}]"
        return Source(name, list(enumerate(embedded(dataset, split), 1)), None, lambda n: f"{name} row {n}")
    if dataset.endswith(".jsonl"):
        return Source(dataset, read_numbered_jsonl(dataset), None, lambda n: f"{dataset} line {n}")
    if is_local_data_file(dataset):
        return read_table(dataset)
    from datasets import load_dataset

    rows = load_dataset(dataset, **({"name": config_name} if config_name else {}), split=split, **token_kwargs())
    name = f"{dataset}[{split}]"
    columns = getattr(rows, "column_names", None)
    return Source(name, list(enumerate(rows, 1)), None if columns is None else list(columns), lambda n: f"{name} row {n}")
