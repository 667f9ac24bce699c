"""Folders that appear whole or not at all: written aside, then renamed into place.

    from loralab.atomic_folder import folder_written_aside
    with folder_written_aside(run_dir / "adapter") as staging:
        model.save_pretrained(staging)          # an interruption here leaves the old folder (or none)

Used for adapters, merged models and the embedded-model cache, so a killed process never leaves a
half-written folder that a later load would trust. The folder gets the permissions of one made by
``mkdir`` (files those of ``open``): what the umask allows, not the 0700 of ``tempfile.mkdtemp`` or
the 0600 some writers use, so a server or container running as another user can read it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def open_up_like_mkdir(folder: Path) -> None:
    """Give ``folder`` and everything in it the modes mkdir/open would: 0777/0666 less the umask."""
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


@contextmanager
def folder_written_aside(path: str | Path) -> Iterator[Path]:
    """Yield a staging folder next to ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield staging
        open_up_like_mkdir(staging)
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
