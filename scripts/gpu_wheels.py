"""Move the Python packages a bare CUDA machine lacks onto it as wheels (a developer tool, not a benchmark).

    .venv/bin/python scripts/gpu_wheels.py download build/gpu-wheels --python-version 3.12   # here: part1, part2, ...
    python scripts/gpu_wheels.py install build/gpu-wheels/part1 [build/gpu-wheels/part2 ...] # the CUDA machine
    python scripts/gpu_wheels.py list                                                        # what is installed

``download`` fetches, with ``pip download --no-deps`` for manylinux x86_64, the packages that a machine with
only torch, transformers, peft and accelerate lacks for every path of ``bench/gpu_check.py`` (bitsandbytes, TRL,
datasets, Unsloth and their own dependencies), each at this venv's version where it has one, and splits them
into folders of at most ``--part-mib`` MiB (a transfer limit of the machine they go to). ``install`` runs
``pip install --no-deps --no-index`` on every wheel whose distribution is not installed yet: an installed one,
at any version, is left alone, so the machine's torch stack stays as it is.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import subprocess
import sys
from pathlib import Path

PACKAGES = ("bitsandbytes", "trl", "datasets", "unsloth", "unsloth_zoo", "pyarrow", "dill", "multiprocess", "xxhash",
            "pandas", "tyro", "docstring_parser", "typeguard", "shtab", "msgspec", "cut_cross_entropy", "hf_transfer",
            "torchao", "sentencepiece", "protobuf", "json5", "structlog", "nest_asyncio", "einops", "diffusers",
            "pydantic", "pydantic_core", "annotated_types", "typing_inspection")
LISTED = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "trl", "datasets", "pyarrow", "unsloth",
          "unsloth_zoo", "pydantic", "triton", "xformers", "cut_cross_entropy")
MANYLINUX = ("2014", "_2_17", "_2_24", "_2_27", "_2_28")  # pip matches --platform tags exactly: list each level


def installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def pinned(names: tuple[str, ...] | list[str]) -> list[str]:
    """Each name at this environment's version (the versions `make setup` tested), or bare when not installed."""
    return [f"{n}=={importlib.metadata.version(n)}" if installed(n) else n for n in names]


def split_wheels(sizes: dict[str, int], cap: int) -> list[list[str]]:
    """Group files into parts of at most ``cap`` bytes each (first fit, largest first; a file over the cap
    gets a part of its own)."""
    parts: list[list[str]] = []
    room: list[int] = []
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        fit = next((i for i, free in enumerate(room) if sizes[name] <= free), None)
        if fit is None:
            parts.append([name])
            room.append(cap - sizes[name])
        else:
            parts[fit].append(name)
            room[fit] -= sizes[name]
    return parts


def move_into_parts(folder: Path, cap_mib: float) -> list[Path]:
    """Move the wheels of ``folder`` into sibling folders part1, part2, ... (``split_wheels``)."""
    sizes = {w.name: w.stat().st_size for w in folder.glob("*.whl")}
    made = []
    for i, names in enumerate(split_wheels(sizes, int(cap_mib * 2**20)), start=1):
        part = folder.parent / f"part{i}"
        part.mkdir(exist_ok=True)
        for name in names:
            (folder / name).replace(part / name)
        print(f"{part}: {len(names)} wheels, {sum(sizes[n] for n in names) / 2**20:.1f} MiB")
        made.append(part)
    return made


def download(dest: Path, python_version: str, cap_mib: float) -> int:
    everything = dest / "all"
    everything.mkdir(parents=True, exist_ok=True)
    platforms = [arg for level in MANYLINUX for arg in ("--platform", f"manylinux{level}_x86_64")]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest",
                           str(everything), "--python-version", python_version, "--implementation", "cp",
                           *platforms, *pinned(PACKAGES)], check=False)
    if proc.returncode:
        return proc.returncode
    move_into_parts(everything, cap_mib)
    return 0


def install(folders: list[Path]) -> int:
    """Install every wheel not installed yet; 1 if one failed (the others are still tried)."""
    failed = 0
    for folder in folders:
        wheels = sorted(folder.glob("*.whl"))
        if not wheels:
            print(f"{folder}: no wheels, nothing to install")
        for wheel in wheels:
            if installed(wheel.name.split("-")[0]):
                print(f"{wheel.name}: already installed, skipped")
                continue
            proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                   "--no-deps", "--no-index", str(wheel)], check=False)
            failed |= proc.returncode != 0
            print(f"{wheel.name}: " + ("FAILED to install (wrong Python or platform?)" if proc.returncode
                                       else "installed"))
    return int(failed)


def list_installed() -> None:
    print(f"python {sys.version.split()[0]} ({sys.executable})")
    for name in LISTED:
        print(f"  {name:18s} {importlib.metadata.version(name) if installed(name) else 'not installed'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    down = sub.add_parser("download", help="fetch the wheels into DIR/part1, part2, ...")
    down.add_argument("dest", type=Path)
    down.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}")
    down.add_argument("--part-mib", type=float, default=56)
    inst = sub.add_parser("install", help="install the wheels of each folder, leaving installed packages alone")
    inst.add_argument("folders", type=Path, nargs="+")
    sub.add_parser("list", help="the packages the GPU check uses, installed or not")
    args = parser.parse_args(argv)
    if args.command == "download":
        return download(args.dest, args.python_version, args.part_mib)
    if args.command == "install":
        code = install(args.folders)
        list_installed()
        return code
    list_installed()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
