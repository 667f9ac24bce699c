"""Files that appear whole or not at all: written to a name beside them, then renamed into place.

    from loralab.atomic_file import write_text_aside, file_written_aside
    write_text_aside(run_dir / "metrics.json", json.dumps(metrics))   # a reader sees the old file or the new one
    with file_written_aside(sweep_dir / "results.csv", newline="") as handle:
        csv.writer(handle).writerows(rows)                                # an error here leaves the old file whole

The temporary file is ``<name>.<pid>.tmp`` in the same folder (so the rename is atomic, and two processes
never share one), opened with ``open`` (its mode is what the umask allows), and removed when the writer
fails. ``loralab.atomic_folder`` does the same for folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def aside_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: ``<name>.<pid>.tmp`` next to it."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp")


@contextmanager
def file_written_aside(path: str | Path, mode: str = "w", encoding: str | None = None,
                       newline: str | None = None) -> Iterator[IO]:
    """Yield a handle on a file beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    aside = aside_name(path)
    try:
        with aside.open(mode, encoding=encoding, newline=newline) as handle:
            yield handle
        os.replace(aside, path)
    finally:
        aside.unlink(missing_ok=True)


def write_text_aside(path: str | Path, text: str, encoding: str | None = None) -> Path:
    """Write ``text`` to ``path`` (aside, then renamed) and return ``path``."""
    with file_written_aside(path, encoding=encoding) as handle:
        handle.write(text)
    return Path(path)
