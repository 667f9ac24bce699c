"""JSON Lines files: one JSON object per line, each numbered as a text editor shows it.

    from loralab.data.jsonl_files import read_numbered_jsonl
    read_numbered_jsonl("data.jsonl")   # [(1, {...}), (3, {...})]: blank lines are skipped but counted

A line that is not JSON, a JSON array or a bare value is refused naming its line, with what to write
instead (a one-line ``python -c`` that splits a JSON array into lines); a file that is not UTF-8 is refused
naming the byte. Other file kinds: ``loralab.data.table_files``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loralab.data.errors import DatasetError
from loralab.data.errors import short_repr as _short


def rows_from_jsonl_text(text: str, source: str) -> list[Any]:
    """The values of JSON Lines text; a line that is not JSON is reported with its number."""
    return [value for _, value in numbered_rows_from_jsonl_text(text, source)]


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


def read_jsonl(path: str | Path) -> list[Any]:
    """Rows of a JSON Lines file (UTF-8); DatasetError for a missing, binary or non-JSON-Lines file."""
    return [value for _, value in read_numbered_jsonl(path)]


def read_numbered_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, row) of a JSON Lines file; the numbers are what a text editor shows."""
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise DatasetError(f"dataset file {path} does not exist{where}; give the path of a .jsonl file "
                           "(loralab run reads it from where you ran the command), or an absolute one.")
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
