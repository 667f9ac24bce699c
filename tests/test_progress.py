"""Live progress: where it goes (notebook display, terminal lines, a sweep's bar), what a line says, sections."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loralab.runs.sections import section_headings
from loralab.train.progress import (
    PROGRESS_ENV,
    PROGRESS_FILE_ENV,
    progress_line,
    progress_mode,
    terminal_line,
)

REPO = Path(__file__).resolve().parents[1]


def test_a_line_says_step_loss_rate_elapsed_and_eta():
    line = progress_line(12, 60, {"loss": 0.91234, "learning_rate": 1e-4}, elapsed_s=31.0, steps_done=12,
                         tokens_done=12_710)
    assert line == "step 12/60 | loss 0.9123 | 410 tokens/s | 00:31 elapsed, ETA 02:04"
    # a resumed run measures its own pace: 2 steps done since it started at step 10
    assert progress_line(12, 60, {"loss": 0.5}, 10.0, 2, None) == "step 12/60 | loss 0.5000 | 00:10 elapsed, ETA 04:00"
    assert progress_line(60, 60, {"eval_loss": 0.25}, 3725.0, 60, None) == "step 60/60 | eval loss 0.2500 | 1:02:05 elapsed"


def test_headless_by_default_and_the_variable_overrides(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert progress_mode() == "lines"  # pytest is no notebook
    for mode in ("notebook", "lines", "none"):
        monkeypatch.setenv(PROGRESS_ENV, mode.upper())
        assert progress_mode() == mode


def test_a_sweep_reads_the_newest_line_from_a_file(tmp_path, monkeypatch, capsys):
    target = tmp_path / "progress.txt"
    monkeypatch.setenv(PROGRESS_FILE_ENV, str(target))
    terminal_line("step 1/8 | loss 3.4")
    terminal_line("step 2/8 | loss 2.5")
    assert target.read_text() == "step 2/8 | loss 2.5\n"
    assert capsys.readouterr().err == ""


def test_each_section_of_notebook_01_is_said_once_at_its_first_code_cell():
    cells = json.loads((REPO / "notebooks" / "01_qlora_finetune.ipynb").read_text())["cells"]
    headings = section_headings(cells)
    assert all(cells[i]["cell_type"] == "code" for i in headings)
    assert list(headings.values()) == ["1. Install (Colab / Kaggle only)", "Parameters", "2. Load the model",
                                       "3. Attach LoRA", "4. Data", "5. The trainer", "6. Train", "7. Inference",
                                       "8. Save"]


@pytest.mark.parametrize("tracker", ["wandb", "trackio"])
def test_a_tracker_that_is_not_installed_is_refused_before_any_model_loads(tracker):
    import importlib.util

    from loralab.params.run_config import validate_params
    from loralab.params.runtime_check import RuntimeCheckError, check_tracker

    cfg = validate_params({"report_to": tracker})
    if importlib.util.find_spec(tracker) is not None:
        check_tracker(cfg.report_to)  # installed on this machine: accepted
        return
    with pytest.raises(RuntimeCheckError, match=f"pip install {tracker}"):
        check_tracker(cfg.report_to)


def test_the_tested_trackers_are_installed_by_make_setup():
    from loralab.params.runtime_check import check_tracker

    for tracker in ("none", "tensorboard", "mlflow"):
        check_tracker(tracker)


def test_loralab_sweep_shows_the_running_notebooks_step_in_its_bar(monkeypatch):
    import time

    from rich.console import Console
    from rich.progress import Progress

    from loralab.sweeps.cli import current_run_progress

    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    with Progress(console=Console(file=open("/dev/null", "w"))) as progress:
        bar = progress.add_task("rank", total=2)
        with current_run_progress(progress, bar, "rank", jobs=1):
            terminal_line("step 3/8 | loss 1.2000")  # what a kernel writes, via the variable it inherits
            deadline = time.time() + 5
            while "step 3/8" not in progress.tasks[0].description and time.time() < deadline:
                time.sleep(0.1)
            assert progress.tasks[0].description == "rank · step 3/8 | loss 1.2000"
        assert progress.tasks[0].description == "rank"
        with current_run_progress(progress, bar, "rank", jobs=2):
            assert os.environ[PROGRESS_ENV] == "none"  # several runs at once: only the bar moves
    assert PROGRESS_FILE_ENV not in os.environ


class _KernelStream:
    """What ipykernel puts in sys.stdout / sys.stderr: the cell's output (and, for stderr, the real fd 2's copy)."""

    __module__ = "ipykernel.iostream"

    def __init__(self, original_fd: int | None = None):
        self.text = ""
        if original_fd is not None:
            self._original_stdstream_copy = original_fd

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_in_a_kernel_a_terminal_line_skips_the_cell_and_reaches_the_terminal(monkeypatch):
    """ipykernel sends its fd 2 into the cell as red standard error: a terminal line goes to the kernel's copy of
    the terminal's fd 2; ``progress_print`` (worker processes' lines) also writes it to the cell's stdout."""
    from loralab.train.progress import progress_print

    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    read_end, write_end = os.pipe()
    cell_out, cell_err = _KernelStream(), _KernelStream(original_fd=write_end)
    monkeypatch.setattr("sys.stdout", cell_out)
    monkeypatch.setattr("sys.stderr", cell_err)
    try:
        terminal_line("held-out loss 3.5563")
        progress_print("step 1/8 | loss 3.4")
    finally:
        os.close(write_end)
        terminal = os.read(read_end, 4096).decode()
        os.close(read_end)
    assert terminal == "[loralab] held-out loss 3.5563\n[loralab] step 1/8 | loss 3.4\n"
    assert cell_out.text == "[loralab] step 1/8 | loss 3.4\n"
    assert cell_err.text == ""


def test_outside_a_kernel_a_progress_line_goes_to_stderr_only(capfd, monkeypatch):
    from loralab.train.progress import progress_print

    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    progress_print("step 2/8 | loss 2.5")  # pytest's fd capture stands in for the terminal
    seen = capfd.readouterr()
    assert seen.out == "" and seen.err == "[loralab] step 2/8 | loss 2.5\n"


PAPERMILL_PROBE = {
    "cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
               "source": ["from loralab.train.progress import progress_print, terminal_line\n",
                          "terminal_line('held-out loss 3.5563')\n",
                          "progress_print('step 1/2 | loss 1.0000')"]}],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


@pytest.mark.slow
def test_under_papermill_lines_reach_the_terminal_and_never_show_as_standard_error(tmp_path):
    """A real kernel as ``loralab run`` starts it (outside pytest, so ipykernel captures fd 2 as it does for a
    user): the terminal that started papermill gets both lines, the executed notebook only the worker-style one,
    as stdout."""
    import subprocess
    import sys

    source, executed = tmp_path / "probe.ipynb", tmp_path / "out.ipynb"
    source.write_text(json.dumps(PAPERMILL_PROBE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "LORALAB_PROGRESS"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "papermill", str(source), str(executed), "-k", "python3",
                           "--cwd", str(tmp_path)], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[loralab] held-out loss 3.5563\n[loralab] step 1/2 | loss 1.0000\n" in done.stderr  # the terminal
    outputs = json.loads(executed.read_text())["cells"][0]["outputs"]
    assert [(o["name"], "".join(o["text"])) for o in outputs] == [("stdout", "[loralab] step 1/2 | loss 1.0000\n")]
