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
