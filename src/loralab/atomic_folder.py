"""Folders that appear whole or not at all: written aside, then renamed into place.

    from loralab.atomic_folder import folder_written_aside
    with folder_written_aside(run_dir / "adapter") as staging:
        model.save_pretrained(staging)          # an interruption here leaves the old folder (or none)

Used for adapters, merged models and the embedded-model cache, so a killed process never leaves a
half-written folder that a later load would trust.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def folder_written_aside(path: str | Path) -> Iterator[Path]:
    """Yield a staging folder next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
