"""``loralab notebooks``: copy the shipped notebooks and params files into a folder of your own.

    loralab notebooks                       # into ./loralab-notebooks/{notebooks,params}/
    loralab notebooks my-lab --force        # into my-lab/, overwriting files that are already there

From Python::

    from loralab.runs.copy_notebooks import copy_notebooks
    written = copy_notebooks("my-lab")      # the files written, e.g. my-lab/notebooks/01_qlora_finetune.ipynb

The copy has the repository's layout (``notebooks/``, ``params/``), so from inside it the commands
of the README and the docs work as they do in a checkout, e.g.
``loralab run notebooks/01_qlora_finetune.ipynb -f params/01_qlora_finetune/smoke.yaml``.
Nothing is written when any target file exists already, unless ``force`` is set.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from loralab.params.errors import ParamsError
from loralab.runs.shipped import notebooks_dir, params_dir, shipped_notebooks

DEFAULT_DEST = "loralab-notebooks"


def shipped_files() -> dict[Path, Path]:
    """Every shipped file to copy, as ``{path inside the copy: source}``."""
    files = {Path("notebooks") / nb.name: nb for nb in shipped_notebooks()}
    params = params_dir()
    files.update({Path("params") / p.relative_to(params): p for p in sorted(params.rglob("*.yaml"))})
    if not files:
        raise ParamsError(f"no notebooks were found in {notebooks_dir()}; reinstall loralab.")
    return files


def copy_notebooks(dest: str | Path = DEFAULT_DEST, force: bool = False) -> list[Path]:
    """Copy the shipped notebooks and params files into ``dest``; return the files written.

    A ``ParamsError`` (and nothing written) when ``dest`` is a file or, without ``force``, when any
    of the files is already there.
    """
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise ParamsError(f"{dest} is a file; give a folder to copy the notebooks into (it is created if missing).")
    files = shipped_files()
    there = [dest / name for name in files if (dest / name).exists()]
    if there and not force:
        more = f" (and {len(there) - 1} more files)" if len(there) > 1 else ""
        raise ParamsError(f"{there[0]} is already there{more}; pass --force to overwrite, or give another folder.")
    written = []
    for name, source in files.items():
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="loralab notebooks",
                                     description="Copy the shipped notebooks and params files into a folder.")
    parser.add_argument("dest", nargs="?", default=DEFAULT_DEST, help=f"folder to copy into (default {DEFAULT_DEST})")
    parser.add_argument("--force", action="store_true", help="overwrite files that are already there")
    args = parser.parse_args(argv)
    written = copy_notebooks(args.dest, force=args.force)
    print(f"wrote {len(written)} files into {Path(args.dest).resolve()}:")
    for path in written:
        print(f"  {path}")
    print(f"next: cd {args.dest} && loralab run notebooks/01_qlora_finetune.ipynb "
          "-f params/01_qlora_finetune/smoke.yaml")
    return 0
