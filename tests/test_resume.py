"""A real training run killed mid-run resumes to the same result; same seed, same run (CPU, slow).

Three runs of notebook 01 on the tiny random model (mechanics: the same code path as the embedded
model's; tiny params: 8 steps of batch 4, a checkpoint every 2 steps, no eval):

* A: uninterrupted (``run_notebook``, in this process's papermill);
* K: ``python -m loralab.cli run ... -f params.yaml`` as a subprocess, SIGKILLed (runner and kernel
  together, like a dead Colab VM) at the moment a checkpoint save is in progress (a ``checkpoint-N`` folder
  not yet marked whole), or at the latest once checkpoint-6 exists;
* R: the very same command again: it must pick K's folder and resume from its newest complete checkpoint.

Same seed, same run: the steps K logged before it was killed (R's log keeps them) equal A's, computed in
another process. Measured (transformers 5.17, torch 2.13 CPU, 2 cores): A vs R are bit-identical
(max |diff| 0.0 on every adapter tensor and on every logged loss); the tolerances below leave room for
other CPUs/kernels and are far below what training changes (the last two optimizer steps move the
adapter by up to 6e-4). Before loralab.train.checkpoints.resume_as_trained the resumed run drifted by 2.6e-3 in
the loss (PEFT's resume upcast the bf16 adapter to fp32): these tests caught that.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY_MODEL
from loralab.params.yaml_reader import read_params_file
from loralab.runs.record import RECORD_NAME, read_run_record
from loralab.runs.runner import run_notebook
from loralab.train.checkpoints import COMPLETE_MARKER, PARAMS_NAME

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks/01_qlora_finetune.ipynb"
pytestmark = pytest.mark.slow

MAX_STEPS = 8
PARAMS = {**read_params_file(REPO / "params/01_qlora_finetune/smoke.yaml"),
          "model_name": TINY_MODEL, "eval_dataset": "", "eval_scorers": [], "show_examples": 0, "max_steps": MAX_STEPS, "save_steps": 2, "save_total_limit": 2,
          "logging_steps": 1, "lora_dropout": 0.05}  # dropout on: resuming must restore the RNG state too
LOSS_TOL = 1e-4  # per logged loss (losses are ~1-3)
WEIGHT_TOL = 1e-5  # max |diff| of any adapter weight (one optimizer step moves them by ~1e-4 or more)
CHECKPOINT_FILES = {"adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "scheduler.pt",
                    "rng_state.pth", "training_args.bin", COMPLETE_MARKER, PARAMS_NAME}  # and tokenizer files


def _adapter(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def _max_loss_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b) == MAX_STEPS, (a, b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    return run_notebook(NOTEBOOK, PARAMS, runs_root=root, run_name="a", timeout_s=600)


def _complete(checkpoints: Path) -> list[Path]:
    return [p for p in checkpoints.glob("checkpoint-*") if (p / COMPLETE_MARKER).is_file()]


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, kill_tree) -> dict:
    root = tmp_path_factory.mktemp("killed")
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(PARAMS))
    command = [sys.executable, "-m", "loralab.cli", "run", str(NOTEBOOK), "-f", str(params_file),
               "--runs-root", str(root / "runs")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    mid_save = False
    deadline = time.time() + 600
    try:
        while time.time() < deadline and process.poll() is None:
            found = list((root / "runs").glob("*/checkpoints"))
            if found:
                checkpoints = found[0]
                complete = _complete(checkpoints)
                saving = [p for p in checkpoints.glob("checkpoint-*") if p not in complete]
                if complete and saving:
                    mid_save = True
                    break
                if any(p.name == "checkpoint-6" for p in complete):
                    break
            time.sleep(0.002)
    finally:
        kill_tree(process)
    run_dir = next((root / "runs").iterdir())
    killed = {
        "mid_save": mid_save,
        "returncode": process.returncode,
        "names": sorted(p.name for p in (run_dir / "checkpoints").iterdir()),
        "marked_but_not_whole": [p.name for p in _complete(run_dir / "checkpoints")
                                 if not CHECKPOINT_FILES <= {f.name for f in p.iterdir()}],
        "finished": (run_dir / "metrics.json").exists(),
        "adapter": (run_dir / "adapter").exists(),
    }
    started = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"run_dir": run_dir, "killed": killed, "stdout": done.stdout, "resume_s": time.time() - started,
            "runs": sorted(p.name for p in (root / "runs").iterdir())}


def test_kill_leaves_only_whole_checkpoints_marked(killed_and_resumed):
    killed = killed_and_resumed["killed"]
    print("killed run:", killed)
    assert killed["returncode"] == -signal.SIGKILL
    assert not killed["finished"] and not killed["adapter"], "the run was killed only after it finished"
    assert any(name.startswith("checkpoint-") for name in killed["names"]), "killed before any checkpoint"
    assert killed["marked_but_not_whole"] == [], f"checkpoints marked whole too early: {killed['marked_but_not_whole']}"


def test_same_command_resumes_the_killed_run(killed_and_resumed):
    run_dir = killed_and_resumed["run_dir"]
    assert killed_and_resumed["runs"] == [run_dir.name], "the second command must reuse the killed run's folder"
    assert "resuming the unfinished run" in killed_and_resumed["stdout"]
    metrics = _metrics(run_dir)
    assert 0 < metrics["resumed_from_step"] < MAX_STEPS, metrics["resumed_from_step"]
    assert len(read_run_record(run_dir)["attempts"]) == 2
    checkpoints = run_dir / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [f"checkpoint-{MAX_STEPS - 2}",
                                                                       f"checkpoint-{MAX_STEPS}"]
    state = json.loads((checkpoints / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS


def test_resumed_run_matches_the_uninterrupted_one(killed_and_resumed, uninterrupted):
    a, resumed = uninterrupted, killed_and_resumed["run_dir"]
    loss_diff = _max_loss_diff(_metrics(a)["train_losses"], _metrics(resumed)["train_losses"])
    weight_diff = _max_weight_diff(_adapter(a), _adapter(resumed))
    print(f"resumed vs uninterrupted: max loss diff {loss_diff:.3g}, max adapter weight diff {weight_diff:.3g}")
    assert loss_diff <= LOSS_TOL
    assert weight_diff <= WEIGHT_TOL
    # The tolerance means something: the last two optimizer steps alone move the adapter far more.
    from safetensors.torch import load_file

    two_steps_earlier = load_file(str(resumed / "checkpoints" / f"checkpoint-{MAX_STEPS - 2}" /
                                      "adapter_model.safetensors"))
    assert _max_weight_diff(two_steps_earlier, _adapter(resumed)) > 10 * WEIGHT_TOL


def test_same_seed_same_run(uninterrupted, killed_and_resumed):
    """The steps the killed process K trained (kept in R's log from K's checkpoint) equal A's: two processes."""
    resumed = _metrics(killed_and_resumed["run_dir"])
    steps = resumed["resumed_from_step"]
    assert steps >= 2
    own, killed = _metrics(uninterrupted)["train_losses"][:steps], resumed["train_losses"][:steps]
    loss_diff = max(abs(x - y) for x, y in zip(own, killed, strict=True))
    print(f"two processes, same seed, first {steps} steps: max loss diff {loss_diff:.3g}")
    assert loss_diff <= LOSS_TOL


def test_run_folder_records_what_repeats_it(uninterrupted, killed_and_resumed):
    metrics = _metrics(uninterrupted)
    assert metrics["params"]["seed"] == PARAMS["seed"] and metrics["params"]["max_steps"] == MAX_STEPS
    assert metrics["versions"]["torch"] and metrics["versions"]["transformers"]
    assert len(metrics["dataset_sha256"]) == 64 and metrics["code_version"]["commit"]
    record = read_run_record(killed_and_resumed["run_dir"])
    assert record["resolved_params"]["seed"] == PARAMS["seed"]
    assert record["attempts"][0]["command"][:2] == ["loralab", "run"]
    [params_file] = record["params_files"]  # path, SHA-256 and parsed params; not the file's text
    assert params_file["params"] == PARAMS and len(params_file["sha256"]) == 64
    assert (killed_and_resumed["run_dir"] / RECORD_NAME).is_file()
