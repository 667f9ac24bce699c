"""The errors a user can cause, and how the command line shows them: one line, no traceback.

    from loralab.params.errors import ParamsError, RunFailed, visible
    raise ParamsError("lora_r: Input should be greater than or equal to 1 (got 0); ...")

``ParamsError`` is a ``ValueError`` (code that catches ValueError keeps working); ``RunFailed`` is a
notebook that stopped with an error inside the kernel, carrying that error's name, message and cell.
``visible`` spells out characters that look like others (a non-breaking hyphen in ``all-linear``).
"""

from __future__ import annotations

import unicodedata


class ParamsError(ValueError):
    """A parameter set that cannot run; the message says which field and what to write."""


class RunFailed(RuntimeError):
    """A notebook run stopped on an error inside the kernel (``ename: evalue``, in cell ``exec_count``)."""

    def __init__(self, ename: str, evalue: str, exec_count: int | None, executed_notebook: str):
        self.ename, self.evalue, self.exec_count, self.executed_notebook = ename, evalue, exec_count, executed_notebook
        cell = f" (cell {exec_count})" if exec_count is not None else ""
        super().__init__(f"{ename}: {evalue}{cell}. The executed notebook, with the full traceback: "
                         f"{executed_notebook}")


def visible(text: str) -> str:
    """'' for plain text; else a note naming each character that is not plain ASCII, by code point.

    ``visible("all\u2011linear")`` -> ", which has U+2011 NON-BREAKING HYPHEN at position 4: retype it in
    plain characters". Two strings that look the same on screen then differ in the message too.
    """
    odd = [(i + 1, c) for i, c in enumerate(text) if ord(c) > 126 or (ord(c) < 32 and c not in "\t\n")]
    if not odd:
        return ""
    named = ", ".join(f"U+{ord(c):04X} {unicodedata.name(c, 'unnamed character')} at position {i}"
                      for i, c in odd[:3])
    more = f" and {len(odd) - 3} more" if len(odd) > 3 else ""
    return f", which has {named}{more}: retype it in plain characters"
