# ruff: noqa: I001  (unsloth must be imported before transformers/peft/trl)
"""Shared fixtures: the repo root and the embedded model's config (no model load needed)."""

from __future__ import annotations

import os

# Compute in float32 on every CPU. Unsloth's CPU backend picks bfloat16 where the CPU has it (AVX512-BF16,
# AMX), float32 elsewhere; the tests compare logits, losses and adapters at float32 tolerances, so they
# pin float32 (Unsloth's own switch, inherited by every notebook kernel and subprocess the tests start).
# `make run` and users keep Unsloth's choice.
os.environ["UNSLOTH_CPU_BF16"] = "0"

import unsloth  # noqa: F401  (before transformers/peft/trl, which it patches; some tests import those)

import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def embedded_config() -> dict:
    """config.json of the embedded model (built by `make setup`, or here on first use)."""
    from loralab.model.embedded import resolve_model_path

    return json.loads((Path(resolve_model_path("embedded/smollm2-135m-instruct")) / "config.json").read_text())


@pytest.fixture(scope="session")
def kill_tree():
    """SIGKILL a subprocess and every process under it (papermill starts the kernel in its own session)."""
    import signal

    import psutil

    def kill(process) -> None:
        parent = psutil.Process(process.pid)
        for proc in [*parent.children(recursive=True), parent]:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        process.wait(timeout=30)

    return kill


FAKE_HF_TOKEN = "hf_loralabFAKEtoken0123456789abcdefXYZ"  # not a real token; must not reach any run file


@pytest.fixture(scope="session")
def smoke_cli_run(tmp_path_factory) -> tuple[Path, str, str]:
    """One ``loralab run`` of notebook 01 with the smoke params and TensorBoard, shared by the tests that read it.

    (run folder, what the terminal got, the fake HF_TOKEN the run had in its environment). Used by
    tests/test_notebook_01.py (the run folder, the token) and tests/test_tracking.py (terminal, events).
    """
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("smoke-cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORALAB_PROGRESS", "TENSORBOARD_"))}
    env["HF_TOKEN"] = FAKE_HF_TOKEN
    done = subprocess.run([sys.executable, "-m", "loralab.cli", "run", "notebooks/01_qlora_finetune.ipynb", "-f",
                           "params/01_qlora_finetune/smoke.yaml", "-p", "report_to", "tensorboard",
                           "--runs-root", str(root)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return next(root.iterdir()), done.stdout + done.stderr, FAKE_HF_TOKEN


@pytest.fixture(scope="session")
def retention_mlflow_run(tmp_path_factory) -> Path:
    """Notebook 01, 20 steps, with the local retention task and report_to: mlflow (local SQLite store).

    Shared by tests/test_retention.py (the retention numbers) and tests/test_tracking.py (the MLflow run).
    """
    from loralab.runs.runner import run_notebook

    params = {"max_steps": 20, "learning_rate": 3e-3, "warmup_steps": 0, "eval_examples": 4, "show_examples": 0,
              "save_steps": 0, "retention_tasks": ["loralab_general_knowledge"], "retention_limit": 32,
              "report_to": "mlflow"}
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        return run_notebook(REPO_ROOT / "notebooks" / "01_qlora_finetune.ipynb", params,
                            runs_root=tmp_path_factory.mktemp("retention"), run_name="retention", timeout_s=900)
