"""A preference run (notebook 04, DPO) killed mid-training resumes with the same command to the uninterrupted result.

Two runs of 8 DPO steps with a checkpoint every 2: A uninterrupted; K ``python -m loralab.cli run``
SIGKILLed (runner and kernel) once checkpoint-4 is complete, then the very same command again, which
must pick K's folder and continue from its newest complete checkpoint. The reference is TRL's frozen
``ref`` copy of the adapter, made when the trainer is built and saved as ``ref/`` in each checkpoint;
the trained adapter at the checkpoint's root must be reloaded too (transformers 5.17 skips it when
there are adapter subfolders: ``ResumeAsTrained``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY_MODEL
from loralab.data.concise_answers import concise_answer_pairs
from loralab.runs.runner import run_notebook
from loralab.train.checkpoints import COMPLETE_MARKER

REPO = Path(__file__).resolve().parents[1]
NB04 = REPO / "notebooks" / "04_preference_tuning.ipynb"
pytestmark = pytest.mark.slow

def test_a_killed_dpo_run_resumes_to_the_uninterrupted_result(tmp_path, kill_tree):
    from safetensors.torch import load_file

    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(json.dumps(p) + "\n" for p in concise_answer_pairs("eval")[:8]))
    params = {"model_name": TINY_MODEL, "load_in_4bit": False, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "max_steps": 8,
              "per_device_train_batch_size": 2, "learning_rate": 5e-4, "warmup_steps": 0, "save_steps": 2,
              "save_total_limit": 2, "eval_dataset": str(held_out), "eval_scorers": [], "show_examples": 0}
    uninterrupted = run_notebook(NB04, params, runs_root=tmp_path / "a", run_name="a", timeout_s=900)

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    command = [sys.executable, "-m", "loralab.cli", "run", str(NB04), "-f", str(params_file),
               "--runs-root", str(tmp_path / "k")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and process.poll() is None:
            if list((tmp_path / "k").glob(f"*/checkpoints/checkpoint-4/{COMPLETE_MARKER}")):
                break
            time.sleep(0.01)
    finally:
        kill_tree(process)
    killed = next((tmp_path / "k").iterdir())
    assert not (killed / "metrics.json").exists(), "the run was killed before it finished"

    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming the unfinished run in {killed}" in done.stdout
    metrics = json.loads((killed / "metrics.json").read_text())
    expected = json.loads((uninterrupted / "metrics.json").read_text())
    assert metrics["resumed_from_step"] in (4, 6)
    a = load_file(str(uninterrupted / "adapter" / "adapter_model.safetensors"))
    r = load_file(str(killed / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == r.keys()
    assert max((a[k].float() - r[k].float()).abs().max().item() for k in a) < 1e-5
    assert metrics["preference_accuracy_after"] == pytest.approx(expected["preference_accuracy_after"], abs=1e-9)
    assert metrics["preference_margin_after"] == pytest.approx(expected["preference_margin_after"], abs=1e-3)
    assert metrics["reference_logps_max_change"] == 0.0
    assert metrics["base_fingerprint_before"] == metrics["base_fingerprint_after"]
