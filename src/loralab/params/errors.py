"""The one error a user's parameters raise: it names the field and says what to write.

    from loralab.params.errors import ParamsError
    raise ParamsError("lora_r: Input should be greater than or equal to 1 (got 0); ...")

It is a ``ValueError``, so code that catches ValueError keeps working.
"""

from __future__ import annotations


class ParamsError(ValueError):
    """A parameter set that cannot run; the message says which field and what to write."""
