"""The docs site's notebook pages: each shipped notebook executed on its smoke params, outputs kept.

    make docs-notebooks                               # = python scripts/notebook_pages.py
    python scripts/notebook_pages.py 01 04            # only these notebooks

    page_drift(Path("notebooks/01_qlora_finetune.ipynb"), Path("docs/notebooks/01_qlora_finetune.ipynb"))  # [] if current
    stderr_blocks(Path("docs/notebooks/01_qlora_finetune.ipynb"))  # [] when no cell shows standard error

Each notebook runs through ``loralab run`` machinery (``run_notebook``) on ``params/<notebook>/smoke.yaml``
where that file exists, else on the notebook's own defaults; notebook 02 reports a sweep of two smoke runs
(``params/sweeps/smoke.yaml``), run first. The executed notebook is written to ``docs/notebooks/`` with
its run folder shown as ``runs/<notebook>`` and this machine's paths taken out, so the page shows what a
reader's run prints. A page whose cells differ from its notebook's (papermill's injected-parameters cell
aside) is stale: ``page_drift`` names the first difference, and tests/test_docs.py fails on it.

A page shows no standard-error output: a browser (and Jupyter) draws it as a red block, which a reader
takes for a failure. The notebooks' first call hides the stack's known messages that do not apply
(``loralab.model.quiet_known_warnings``) and training progress is plain output (``loralab.train.progress``);
``stderr_blocks`` lists what is left, and tests/test_docs.py fails on any.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # this checkout's loralab, installed or not

from loralab.params.yaml_reader import read_params_file
from loralab.runs.shipped import notebooks_dir

PAGES_DIR = REPO / "docs" / "notebooks"
SMOKE_SWEEP = REPO / "params" / "sweeps" / "smoke.yaml"
INJECTED_TAG = "injected-parameters"


def smoke_params(notebook: Path) -> tuple[dict[str, Any], str]:
    """The parameters a notebook's page is rendered with, and where they come from."""
    smoke = REPO / "params" / notebook.stem / "smoke.yaml"
    if smoke.is_file():
        return read_params_file(smoke), str(smoke.relative_to(REPO))
    return {}, "the notebook's defaults"


def _cells(notebook: dict) -> list[tuple[str, str]]:
    return [(cell["cell_type"], "".join(cell["source"])) for cell in notebook["cells"]
            if INJECTED_TAG not in cell.get("metadata", {}).get("tags", [])]


def page_drift(notebook: Path, page: Path) -> list[str]:
    """Why ``page`` no longer shows ``notebook`` (missing, a cell differs, no outputs); [] when it is current."""
    if not page.is_file():
        return [f"{page} is missing"]
    shipped, rendered = _cells(json.loads(notebook.read_text())), _cells(json.loads(page.read_text()))
    problems = []
    if len(shipped) != len(rendered):
        problems.append(f"{page.name} has {len(rendered)} cells, {notebook.name} has {len(shipped)}")
    for i, (ours, theirs) in enumerate(zip(shipped, rendered, strict=False)):
        if ours != theirs:
            problems.append(f"{page.name} cell {i} differs from {notebook.name}'s: {theirs[1][:60]!r}")
            break
    outputs = [cell.get("outputs") for cell in json.loads(page.read_text())["cells"] if cell["cell_type"] == "code"]
    if not any(outputs):
        problems.append(f"{page.name} has no outputs")
    errors = [o for cell in outputs for o in cell or [] if o.get("output_type") == "error"]
    if errors:
        problems.append(f"{page.name} shows an error: {errors[0].get('ename')}: {errors[0].get('evalue')}")
    return problems


def stderr_blocks(page: Path) -> list[str]:
    """Each standard-error output of ``page``, as ``cell N: its first line``; [] when there is none."""
    notebook = json.loads(page.read_text())
    found = []
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                text = "".join(output.get("text", "")).strip()
                found.append(f"cell {index}: {text.splitlines()[0] if text else '(empty)'}")
    return found


TEMP_NAME = re.compile(r"(/tmp/[A-Za-z_.-]*?)[a-z0-9_]{8}(?=[/\"' ])")  # tempfile's random 8 characters


def _scrub(text: str, replacements: dict[str, str]) -> str:
    """``text`` with each path of ``replacements`` replaced, and temporary folders' random names as XXXXXXXX."""
    for old, new in replacements.items():
        text = text.replace(old, new)
    return TEMP_NAME.sub(r"\1XXXXXXXX", text)


def write_page(executed: Path, page: Path, run_dir: Path, shown_as: str) -> None:
    """The executed notebook as a page: its run folder shown as ``shown_as``, this machine's paths taken out."""
    notebook = json.loads(executed.read_text())
    notebook["metadata"].pop("widgets", None)
    notebook["metadata"].get("papermill", {}).pop("input_path", None)
    notebook["metadata"].get("papermill", {}).pop("output_path", None)
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    text = _scrub(text, {str(run_dir.resolve()): shown_as, str(run_dir.resolve().parent): "runs",
                         str(REPO) + "/": "", str(REPO): ".", str(Path.home()): "~"})
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(text)


def render_page(notebook: Path, runs_root: Path, pages_dir: Path = PAGES_DIR) -> Path:
    """Run ``notebook`` on its smoke params (02: on a fresh smoke sweep) and write its page; returns the page."""
    from loralab.runs.runner import run_notebook

    params, source = smoke_params(notebook)
    if notebook.stem == "02_sweep_report":  # the sweep through its command (loralab.sweeps is a later stage)
        sweeps_root = runs_root / "sweeps"
        subprocess.run([sys.executable, "-m", "loralab.cli", "sweep", str(SMOKE_SWEEP), "--sweeps-root",
                        str(sweeps_root)], check=True)
        params = {"sweep_dir": str(sweeps_root / SMOKE_SWEEP.stem)}
        source = f"the sweep {SMOKE_SWEEP.relative_to(REPO)}"
    started = time.monotonic()
    run_dir = run_notebook(notebook, params, runs_root=runs_root, run_name=notebook.stem, timeout_s=1800,
                           source=source)
    page = pages_dir / notebook.name
    write_page(run_dir / notebook.name, page, run_dir, f"runs/{notebook.stem}")
    print(f"{page.relative_to(REPO) if page.is_relative_to(REPO) else page}: {source}, "
          f"{time.monotonic() - started:.0f} s")
    return page


def main(argv: list[str]) -> int:
    from loralab.runs.shipped import find_notebook

    try:
        notebooks = [find_notebook(name) for name in argv] or sorted(notebooks_dir().glob("*.ipynb"))
    except ValueError as error:  # a name that is no shipped notebook: one line, as loralab's commands say it
        print(f"error: {error}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="loralab-pages-") as scratch:
        for notebook in notebooks:
            render_page(notebook, Path(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
