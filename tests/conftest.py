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
