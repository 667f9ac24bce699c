"""Which section of a notebook a headless run is in, said on the terminal as each section starts.

    from loralab.runs.sections import section_lines
    with section_lines(notebook, parameters):
        papermill.execute_notebook(src, out, parameters=parameters, log_output=True, progress_bar=False)
    # terminal: "[loralab] 2. Load the model", "[loralab] Before training", "[loralab] 5. Train", ...

papermill's own ``log_output`` logs "Executing Cell N" as each cell starts; while the block runs, the
``papermill`` logger says that as the section's heading (the nearest markdown heading above a code cell, once,
at its first code cell) and drops the cells' output, which the executed notebook holds. Its other warnings go
to stderr as before, except "Passed unknown parameter": the schema's fields outside the parameters cell are
parameters too, checked before the kernel started.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loralab.train.progress import terminal_line

_CELL_STARTS = re.compile(r"Executing Cell (\d+)")


def section_headings(cells: list) -> dict[int, str]:
    """cell index -> the heading of the section that starts there (first code cell after each heading)."""
    starts: dict[int, str] = {}
    pending: str | None = None
    for index, cell in enumerate(cells):
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            text = "".join(source) if isinstance(source, list) else source
            heading = next((line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")), None)
            if heading:
                pending = heading
        elif cell.get("cell_type") == "code" and pending:
            starts[index] = pending
            pending = None
    return starts


class _SectionLines(logging.Handler):
    def __init__(self, headings: dict[int, str]):
        super().__init__(logging.INFO)
        self.headings = headings

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        started = _CELL_STARTS.match(message)
        if started and int(started[1]) - 1 in self.headings:
            terminal_line(self.headings[int(started[1]) - 1])
        elif (record.levelno >= logging.WARNING and record.funcName != "log_output_message"
              and not message.startswith("Passed unknown parameter")):
            print(message, file=sys.stderr)


@contextlib.contextmanager
def section_lines(notebook: Path, parameters: dict[str, Any]) -> Iterator[None]:
    """While the block runs papermill on ``notebook`` with ``parameters`` (``log_output=True``), one terminal
    line per section; the ``papermill`` logger is as it was afterwards."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(notebook))
    if parameters:  # numbered as papermill numbers them: with its injected cell
        nb = parameterize_notebook(nb, parameters, kernel_name="python3", language="python")
    logger = logging.getLogger("papermill")
    handler, saved = _SectionLines(section_headings(nb.cells)), (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
