"""Checkpoints are whole or absent; resuming picks the newest whole one; `loralab run` finds its run.

Fast: a stand-in Trainer (it writes a checkpoint file by file and calls the callbacks' ``on_save`` as
transformers' Trainer does) is killed with SIGKILL in a child process in the middle of writing a checkpoint
(one process imports transformers, then forks a child per scenario). The real Trainer killed mid-run is
tests/test_resume.py (slow).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loralab.params.run_config import validate_params
from loralab.runs.record import RECORD_NAME, find_unfinished_run, hold_run_lock, read_run_record
from loralab.train.checkpoints import (
    COMPLETE_MARKER,
    PARAMS_NAME,
    CheckpointMismatchError,
    complete_checkpoints,
    resume_checkpoint,
)

REPO = Path(__file__).resolve().parents[1]

# A stand-in for transformers.Trainer: writes checkpoint-N file by file, trainer_state.json last (as the
# real one does), keeps the newest two, then calls the callbacks' on_save as the real one does; `die_after`
# files into step `die_at` the process SIGKILLs itself, mid-save. One process imports what a save imports,
# then forks a child per scenario.
FAKE_TRAINER = textwrap.dedent('''
    import json, os, shutil, signal, sys, traceback
    from pathlib import Path
    from types import SimpleNamespace
    from loralab.train.checkpoints import whole_checkpoints

    callback = whole_checkpoints({"lora_r": 8, "seed": 1})  # imports transformers once, before the forks

    def save(output_dir, step, die_at, die_after):
        folder = Path(output_dir) / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        for i, name in enumerate(["adapter_model.safetensors", "optimizer.pt", "rng_state.pth",
                                  "trainer_state.json"]):
            if step == die_at and i == die_after:
                os.kill(os.getpid(), signal.SIGKILL)
            (folder / name).write_text(f"{name} at step {step}")
        for old in sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
            shutil.rmtree(old)
        if step == die_at and die_after == 4:  # saved, not yet marked
            os.kill(os.getpid(), signal.SIGKILL)
        args = SimpleNamespace(output_dir=output_dir)
        callback.on_save(args, SimpleNamespace(global_step=step, is_world_process_zero=True), None)

    def train(output_dir, die_at, die_after):
        for step in (2, 4, 6, 8):
            save(output_dir, step, die_at, die_after)

    returncodes = []
    for output_dir, die_at, die_after in json.loads(sys.argv[1]):
        pid = os.fork()
        if pid == 0:
            try:
                train(output_dir, die_at, die_after)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        returncodes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))  # -9: killed by SIGKILL
    print(json.dumps(returncodes))
''')
SCENARIOS = {"uninterrupted": (-1, -1), **{f"killed after {n} files": (6, n) for n in (0, 2, 3, 4)}}


@pytest.fixture(scope="module")
def fake_trainer_runs(tmp_path_factory) -> dict[str, tuple[Path, int]]:
    """Each scenario's checkpoint folder and the return code of its process (-9: killed)."""
    folders = {name: tmp_path_factory.mktemp("fake-trainer") for name in SCENARIOS}
    runs = [[str(folders[name]), die_at, die_after] for name, (die_at, die_after) in SCENARIOS.items()]
    done = subprocess.run([sys.executable, "-c", FAKE_TRAINER, json.dumps(runs)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    returncodes = json.loads(done.stdout.splitlines()[-1])
    assert all(code in (0, -9) for code in returncodes), done.stderr
    return {name: (folders[name], code) for name, code in zip(SCENARIOS, returncodes)}


@pytest.mark.parametrize("die_after", [0, 2, 3, 4])
def test_sigkill_mid_save_leaves_only_whole_checkpoints(fake_trainer_runs, die_after):
    folder, returncode = fake_trainer_runs[f"killed after {die_after} files"]
    assert returncode == -9, "the child should have been killed mid-save"
    # Killed once checkpoint-6 was written: the Trainer had already rotated checkpoint-2 away.
    whole = ["checkpoint-4"] if die_after == 4 else ["checkpoint-2", "checkpoint-4"]
    assert [p.name for p in complete_checkpoints(folder)] == whole
    assert (folder / "checkpoint-6").is_dir(), "the killed save's folder is there, unmarked"
    for name in whole:
        files = sorted(p.name for p in (folder / name).iterdir())
        assert files == sorted(["adapter_model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json",
                                PARAMS_NAME, COMPLETE_MARKER]), files

    cfg = validate_params({"lora_r": 8, "seed": 1})
    resumed = resume_checkpoint(folder, cfg)
    assert resumed == folder / "checkpoint-4"
    assert sorted(p.name for p in folder.iterdir()) == whole, "the half-written checkpoint-6 is removed"


def test_uninterrupted_saves_keep_the_newest_two_and_record_params(fake_trainer_runs):
    folder, returncode = fake_trainer_runs["uninterrupted"]
    assert returncode == 0
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-6", "checkpoint-8"]
    assert json.loads((folder / "checkpoint-8" / PARAMS_NAME).read_text()) == {"lora_r": 8, "seed": 1}
    assert [p.name for p in complete_checkpoints(folder)] == ["checkpoint-6", "checkpoint-8"]


def _fake_checkpoint(folder: Path, step: int, params: dict, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / PARAMS_NAME).write_text(json.dumps(params))
    (path / "trainer_state.json").write_text("{}")
    if complete:
        (path / COMPLETE_MARKER).write_text("{}")
    return path


def test_resume_picks_the_newest_complete_checkpoint_and_refuses_other_params(tmp_path):
    cfg = validate_params({"lora_r": 8, "max_steps": 10, "save_steps": 2})
    _fake_checkpoint(tmp_path, 4, cfg.model_dump())
    _fake_checkpoint(tmp_path, 12, cfg.model_dump())  # step 12 > step 4: numeric, not text, order
    _fake_checkpoint(tmp_path, 14, cfg.model_dump(), complete=False)  # e.g. written by a plain, killed Trainer
    assert resume_checkpoint(tmp_path, cfg) == tmp_path / "checkpoint-12"

    # Output, eval and checkpoint knobs may change between tries; training params may not.
    assert resume_checkpoint(tmp_path, cfg.model_copy(update={"eval_examples": 3, "save_steps": 5})) is not None
    with pytest.raises(CheckpointMismatchError, match=r"lora_r=8 there, 16 now"):
        resume_checkpoint(tmp_path, cfg.model_copy(update={"lora_r": 16}))

    assert resume_checkpoint(tmp_path, cfg.model_copy(update={"resume": False})) is None
    assert complete_checkpoints(tmp_path) == [], "resume: false must clear the old run's checkpoints"


def test_loralab_run_reuses_only_its_own_unfinished_folder(tmp_path, monkeypatch):
    """run_notebook with papermill replaced by a stand-in that dies (writes no metrics.json) or finishes."""
    from loralab.runs import runner

    finish = {"value": False}

    def fake_execute(notebook, run_dir, parameters, folder_param, timeout_s):
        if finish["value"]:
            (run_dir / "metrics.json").write_text("{}")

    monkeypatch.setattr(runner, "_execute", fake_execute)
    notebook = REPO / "notebooks/01_qlora_finetune.ipynb"
    params = {"max_steps": 4, "save_steps": 2, "eval_dataset": "", "eval_scorers": []}

    first = runner.run_notebook(notebook, params, runs_root=tmp_path)
    record = read_run_record(first)
    assert record["resolved_params"]["max_steps"] == 4 and record["resolved_params"]["seed"] == 3407
    assert record["attempts"][0]["code_version"]["commit"], "the loralab commit is recorded"

    assert runner.run_notebook(notebook, params, runs_root=tmp_path) == first, "same params: resume"
    assert len(read_run_record(first)["attempts"]) == 2
    other = runner.run_notebook(notebook, {**params, "max_steps": 5}, runs_root=tmp_path)
    assert other != first, "other params: a new folder"
    fresh = runner.run_notebook(notebook, params, runs_root=tmp_path, fresh=True)
    assert fresh not in (first, other), "--fresh: a new folder"
    assert runner.run_notebook(notebook, {**params, "resume": False}, runs_root=tmp_path) not in (first, fresh)

    with hold_run_lock(fresh), hold_run_lock(first):  # both "still running": never picked up
        assert find_unfinished_run(tmp_path, notebook, read_run_record(first)["resolved_params"]) is None

    finish["value"] = True
    newest = find_unfinished_run(tmp_path, notebook, read_run_record(first)["resolved_params"])
    assert newest == fresh  # the newest unfinished folder with these params
    assert runner.run_notebook(notebook, params, runs_root=tmp_path) == fresh
    assert (fresh / "metrics.json").is_file() and (fresh / RECORD_NAME).is_file()
    assert runner.run_notebook(notebook, params, runs_root=tmp_path) == first  # fresh finished; first still open


def test_run_record_keeps_params_files_as_digest_and_mapping_not_text(tmp_path, monkeypatch):
    """`loralab run -f params.yaml` (papermill replaced): a commented-out token must not reach the run folder."""
    import hashlib

    from loralab.runs import runner

    monkeypatch.setattr(runner, "_execute", lambda notebook, run_dir, parameters, folder_param, timeout_s: None)
    token = "hf_abcdefghijklmnopqrstuvwxyz0123456789"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(f"max_steps: 4  # short\n# hf_token: {token}\nsave_steps: 2\neval_dataset: ''\n"
                           "eval_scorers: []\n")
    notebook = REPO / "notebooks/01_qlora_finetune.ipynb"
    assert runner.main([str(notebook), "-f", str(params_file), "--runs-root", str(tmp_path / "runs")]) == 0

    [run_dir] = (tmp_path / "runs").iterdir()
    text = (run_dir / RECORD_NAME).read_text()
    assert token not in text and "hf_token" not in text and "# short" not in text
    sha256 = hashlib.sha256(params_file.read_bytes()).hexdigest()
    assert sha256 in text
    [entry] = read_run_record(run_dir)["params_files"]
    assert entry == {"path": str(params_file), "resolved_path": str(params_file.resolve()), "sha256": sha256,
                     "params": {"max_steps": 4, "save_steps": 2, "eval_dataset": "", "eval_scorers": []}}
