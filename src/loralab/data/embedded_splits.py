"""Splits of the datasets shipped inside loralab: ``train`` and ``eval``, or a slice of them in the split syntax
hub datasets take (the datasets library's ``ReadInstruction``): ``eval[:24]``, ``train[-200:]``, ``train[:10%]``.

    rows = embedded_split_rows("embedded/json-answers", "eval[:24]", read)   # read("train" | "eval") -> rows
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from loralab.data.errors import DatasetError

SPLITS = ("train", "eval")
Row = TypeVar("Row")


def embedded_split_rows(dataset: str, split: str, read: Callable[[str], list[Row]]) -> list[Row]:
    """The rows ``split`` names; ``read(name)`` gives all rows of the split ``name`` (train or eval)."""
    if split in SPLITS:
        return read(split)
    from datasets import ReadInstruction

    rows = {name: read(name) for name in SPLITS}
    try:
        parts = ReadInstruction.from_spec(split).to_absolute({name: len(found) for name, found in rows.items()})
    except (ValueError, AssertionError) as error:  # an unknown split name, or a slice written wrong
        raise DatasetError(f"{dataset} has the splits 'train' and 'eval' and slices of them such as eval[:24], "
                           f"train[-200:] or train[:10%], not {split!r} ({error}).") from None
    return [row for part in parts for row in rows[part.splitname][part.from_:part.to]]
