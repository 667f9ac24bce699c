"""Write constraints/lowest.txt: every lower bound in pyproject.toml, resolved together (asks PyPI; needs uv).

    python scripts/lowest_constraints.py            # `make constraints-lowest`
    python scripts/lowest_constraints.py --check    # resolve again, say whether the file is up to date

Each requirement of the core dependencies and of the `unsloth-deps`, `tracking`, `docs` and `dev` extras that has
a lower bound (`>=X`) is held at exactly X, next to the CPU torch (TORCH_SPEC, from the same find-links pip uses),
unsloth and unsloth_zoo at their pins, and unsloth's own requirements without its GPU-only packages (the `gpu`
extra: unsloth is installed with --no-deps on CPU machines). What nothing bounds resolves to its newest version.
When a bound cannot be resolved (it conflicts with an exact pin or another package's floor), uv says which
requirements conflict and nothing is written: raise that bound in pyproject.toml. `make test-lowest` installs the
file and runs the tests that load no model against it.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "constraints" / "lowest.txt"
EXTRAS = ("unsloth-deps", "tracking", "docs", "dev")
HEADER = """\
# The lowest versions pyproject.toml allows, resolved together; what `make test-lowest` installs and tests.
# Written by `make constraints-lowest` (scripts/lowest_constraints.py) with uv's lowest-direct resolution,
# every lower bound held at its floor. Do not edit: change pyproject.toml and run it again.
"""


def lower_bound(requirement: Requirement) -> str | None:
    """The X of `>=X` (or `==X`), or None where the requirement sets no floor."""
    floors = [spec.version for spec in requirement.specifier if spec.operator in (">=", "==")]
    return floors[0] if floors else None


def direct_requirements(project: dict) -> list[Requirement]:
    """The core dependencies and the tested extras; an unbounded `unsloth-deps` entry is left out (it mirrors
    an unbounded requirement of unsloth's, which brings it in at its newest version)."""
    extras = project["optional-dependencies"]
    found = [Requirement(line) for line in project["dependencies"]]
    for extra in EXTRAS:
        found += [Requirement(line) for line in extras[extra]
                  if extra != "unsloth-deps" or lower_bound(Requirement(line))]
    unbounded = [str(req) for req in found if lower_bound(req) is None and req.name != "torch"]
    if unbounded:
        raise SystemExit(f"error: no lower bound in pyproject.toml for {', '.join(unbounded)}: give each a `>=`")
    return found + [Requirement(line) for line in extras["unsloth"]]


def find_links() -> list[str]:
    """The find-links pip uses here (where the CPU torch wheel lies), so uv resolves the same torch."""
    links = os.environ.get("PIP_FIND_LINKS", "")
    if not links:
        pip = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                             capture_output=True, text=True, check=False)
        links = pip.stdout if pip.returncode == 0 else ""
    return links.split()


def resolve(torch_spec: str) -> str:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    direct = direct_requirements(project)
    gpu_only = [Requirement(line).name for line in project["optional-dependencies"]["gpu"]] + ["triton-windows"]
    floors = [f"{req.name}=={lower_bound(req)}.*" for req in direct if req.name != "torch"]
    torch = Requirement(torch_spec)  # a constraint, not a direct requirement: its newest match (the +cpu build)
    with tempfile.TemporaryDirectory() as folder:
        files = {"direct.in": [str(req) for req in direct if req.name != "torch"], "floors.txt": floors + [str(torch)],
                 "excludes.txt": gpu_only}
        for name, lines in files.items():
            (Path(folder) / name).write_text("\n".join(lines) + "\n")
        command = [sys.executable, "-m", "uv", "pip", "compile", "direct.in", "-c", "floors.txt",
                   "--excludes", "excludes.txt", "--resolution", "lowest-direct", "--python-version",
                   f"{sys.version_info.major}.{sys.version_info.minor}", "--no-header", "--no-annotate",
                   "--quiet"]
        for link in find_links():
            command += ["--find-links", link]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: the lower bounds do not resolve together:\n{result.stderr.strip()}")
    return HEADER + result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", default="torch==2.13.0", help="the torch requirement (the Makefile's TORCH_SPEC)")
    parser.add_argument("--check", action="store_true", help="only say whether constraints/lowest.txt is current")
    args = parser.parse_args()
    text = resolve(args.torch)
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        sys.exit(0 if current == text else f"error: {OUTPUT.relative_to(REPO)} is out of date: make constraints-lowest")
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(text)
    pins = [line for line in text.splitlines() if re.match(r"[A-Za-z0-9]", line)]
    print(f"{OUTPUT.relative_to(REPO)}: {len(pins)} pins")


if __name__ == "__main__":
    main()
