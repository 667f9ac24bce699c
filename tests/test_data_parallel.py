"""Data-parallel training under torchrun on this CPU (gloo): 2 processes against 1 with the same global batch,
a worker killed mid-run, and two machines (two torchrun agents) meeting on 127.0.0.1.

The runs are notebook 01 end to end on the tiny random model (16-bit base, 8 steps, a checkpoint every
2, dropout 0 so that the ranks' random numbers do not matter). The 2-process run (2 x 2 rows per step)
runs a renamed copy of notebook 01 (``my_finetune.ipynb``, as a Colab user makes one: it is known by its
contract, not its name) and has its rank-1 worker killed once checkpoint-4 is complete: the run must stop naming that rank, leave
only whole checkpoints, and the same command must resume it. Finished, it must log the losses of the
1-process run (4 rows per step) within 1e-4, its adapter (saved by the notebook after rank 0 trained
it) must reload and reproduce the trained logits, and only rank 0 may have written files.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY_MODEL
from loralab.runs.runner import run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01_qlora_finetune.ipynb"
pytestmark = pytest.mark.slow
BASE = {"model_name": TINY_MODEL, "load_in_4bit": False, "max_steps": 8, "lora_r": 8, "lora_alpha": 16,
        "lora_dropout": 0.0,
        "learning_rate": 1e-3, "warmup_steps": 0, "max_seq_length": 128, "eval_examples": 2, "show_examples": 0,
        "eval_split": "eval[:8]",  # the held-out loss on 8 rows (tiny model: the vocabulary is most of its cost)
        "max_new_tokens": 16, "save_steps": 2, "save_total_limit": 2,
        # Padded batches: the comparison is about sharding. With the default padding_free the 1-process run
        # flattens 4 rows into one sequence and each rank 2, so attention sums in another order: measured,
        # the losses still agree within 1e-4, the adapters within 4.6e-4 (Adam magnifies tiny gradients).
        "packing": "none"}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    params = BASE | {"per_device_train_batch_size": 4, "num_processes": 1}
    return run_notebook(NOTEBOOK, params, runs_root=tmp_path_factory.mktemp("one"), run_name="one", timeout_s=900)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, kill_tree) -> dict:
    """2 processes; rank 1's worker is killed once checkpoint-4 is complete; then the same command again."""
    import psutil

    from loralab.train.checkpoints import COMPLETE_MARKER

    root = tmp_path_factory.mktemp("two")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(BASE | {"per_device_train_batch_size": 2}))
    copy = root / "my_finetune.ipynb"
    shutil.copy(NOTEBOOK, copy)
    command = [sys.executable, "-m", "loralab.cli", "run", str(copy), "-f", str(params), "--nproc-per-node", "2",
               "--runs-root", str(root / "runs")]
    first = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    try:
        deadline = time.time() + 600
        while time.time() < deadline and first.poll() is None and killed is None:
            if list((root / "runs").glob(f"*/checkpoints/checkpoint-4/{COMPLETE_MARKER}")):
                for proc in psutil.Process(first.pid).children(recursive=True):
                    try:
                        if "loralab.train.worker" in " ".join(proc.cmdline()) and proc.environ().get("RANK") == "1":
                            proc.kill()
                            killed = proc.pid
                    except psutil.NoSuchProcess:
                        continue
            time.sleep(0.05)
        out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            kill_tree(first)
    run = next((root / "runs").iterdir())
    state = {"killed": killed, "returncode": first.returncode, "out": out, "run": run,
             "adapter": (run / "adapter").exists(), "metrics": (run / "metrics.json").exists(),
             "checkpoints": {p.name: (p / COMPLETE_MARKER).is_file() and len(list(p.glob("rng_state_*.pth"))) == 2
                             for p in (run / "checkpoints").glob("checkpoint-*")}}
    time.sleep(1)
    state["orphans"] = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
                        if "loralab.train.worker" in " ".join(p.info["cmdline"] or [])]
    state["again"] = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=900, check=False)
    return state


@pytest.fixture(scope="module")
def two_processes(killed_and_resumed) -> Path:
    again = killed_and_resumed["again"]
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    return killed_and_resumed["run"]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def test_two_processes_follow_one_process_with_the_same_global_batch(one_process, two_processes):
    """Measured (embedded model, no kill): losses within 1e-6, adapters 2.7e-5, held-out loss after 1.4e-3."""
    one, two = _metrics(one_process), _metrics(two_processes)
    assert len(one["train_losses"]) == len(two["train_losses"]) == BASE["max_steps"]
    assert two["train_losses"] == pytest.approx(one["train_losses"], abs=1e-4)
    assert two["train_losses"][-1] < two["train_losses"][0]
    from safetensors.torch import load_file

    a = load_file(str(one_process / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(two_processes / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    # measured 2.7e-5: the gradients are summed in another order (two halves, then the all-reduce)
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 2e-4
    assert two["eval_loss_after"] == pytest.approx(one["eval_loss_after"], abs=5e-3)


def test_the_adapter_trained_by_rank_0_reloads_and_reproduces_logits(two_processes):
    from peft import PeftModel
    from safetensors.torch import load_file

    from loralab.adapters.save import probe_logits
    from loralab.model.loading import load_model
    from loralab.params.run_config import validate_params

    base, tokenizer = load_model(validate_params(_metrics(two_processes)["params"]))
    model = PeftModel.from_pretrained(base, str(two_processes / "adapter"))
    reference = load_file(str(two_processes / "reference_logits.safetensors"))
    input_ids, logits = probe_logits(model, tokenizer)
    assert input_ids.tolist() == reference["input_ids"].tolist()
    assert (logits - reference["logits"]).abs().max().item() < 1e-2  # fp32 summation order between processes
    with model.disable_adapter():
        _, without = probe_logits(model, tokenizer)
    assert (without - reference["logits"]).abs().max().item() > 0.5, "the adapter trained by the workers changed nothing"


def test_only_rank_0_wrote_and_the_run_folder_is_one_runs(two_processes):
    checkpoints = sorted(p.name for p in (two_processes / "checkpoints").iterdir() if p.is_dir())
    assert checkpoints == ["checkpoint-6", "checkpoint-8"], checkpoints  # save_steps 2, save_total_limit 2
    for checkpoint in (two_processes / "checkpoints").glob("checkpoint-*"):
        rng = sorted(p.name for p in checkpoint.glob("rng_state*"))
        assert rng == ["rng_state_0.pth", "rng_state_1.pth"], rng  # each rank's random state, written by the Trainer
    assert len(list(two_processes.glob("metrics.json"))) == 1
    assert _metrics(two_processes)["params"]["num_processes"] == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_machines_meet_on_localhost_and_finish(tmp_path, kill_tree):
    port = _free_port()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(BASE | {"max_steps": 3, "save_steps": 0, "per_device_train_batch_size": 2,
                                             "num_nodes": 2, "master_port": port}))
    base = [sys.executable, "-m", "loralab.cli", "run", str(NOTEBOOK), "-f", str(params)]
    node1 = subprocess.Popen([*base, "--node-rank", "1"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)
        node0 = subprocess.run([*base, "--runs-root", str(tmp_path / "runs")], cwd=tmp_path, capture_output=True,
                               text=True, timeout=900, check=False)
        out1, _ = node1.communicate(timeout=300)
    finally:
        if node1.poll() is None:
            kill_tree(node1)
    assert node0.returncode == 0, node0.stdout[-3000:] + node0.stderr[-3000:]
    assert node1.returncode == 0, out1[-3000:]
    assert "node 1: training done" in out1
    run = next((tmp_path / "runs").iterdir())
    metrics = _metrics(run)
    assert len(metrics["train_losses"]) == 3 and metrics["params"]["num_nodes"] == 2
    assert not (tmp_path / "checkpoints").exists(), "machine 1 writes nothing where it ran"


def test_a_killed_worker_fails_the_run_clearly_and_the_same_command_resumes(killed_and_resumed, two_processes):
    state = killed_and_resumed
    assert state["killed"] is not None, "no worker of rank 1 was found to kill"
    out = state["out"]
    assert state["returncode"] == 2, out[-3000:]
    error = next(line for line in out.splitlines() if line.startswith("error: "))
    assert "training worker rank 1 failed (exit code -9, killed)" in error, error
    assert "run the same command again to resume" in error
    assert not state["adapter"] and not state["metrics"]
    assert state["checkpoints"] and all(state["checkpoints"].values()), state["checkpoints"]  # whole or absent
    assert state["orphans"] == [], "orphan workers left behind"

    assert f"resuming the unfinished run in {two_processes}" in state["again"].stdout
    metrics = _metrics(two_processes)
    assert metrics["resumed_from_step"] in (4, 6)
    assert len(metrics["train_losses"]) == 8


def test_the_trainer_line_the_cpu_workers_step_around_is_still_there():
    """``loralab.train.worker.optimizer_loads_to_cpu`` exists for one line of transformers' Trainer: under DDP
    the optimizer state loads to ``args.device`` (``cpu:0`` on a CPU). If that line changes, so must the worker."""
    import inspect

    from transformers import Trainer

    source = inspect.getsource(Trainer._load_optimizer_and_scheduler)
    assert 'map_location = self.args.device if self.args.world_size > 1 else "cpu"' in source
