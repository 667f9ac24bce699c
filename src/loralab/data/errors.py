"""The one error a dataset raises: a row or file that cannot be used, named as a person finds it.

    from loralab.data.errors import DatasetError, short_repr
    raise DatasetError(f"reviews.csv row 5 (the header is row 1): the 'label' cell is empty; ...")

``loralab.cli`` prints a DatasetError as one line (no traceback); ``loralab run`` raises it before the
kernel starts for data on this machine.
"""

from __future__ import annotations

from typing import Any


class DatasetError(ValueError):
    """A dataset row or file that cannot be used; the message names the row and what to fix."""


def short_repr(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters for an error line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...(cut)"
