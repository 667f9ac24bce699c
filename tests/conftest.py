"""Shared fixtures: the repo root, the models' configs, and the notebook runs several test files read.

Two models: ``TINY_MODEL`` (random weights, the embedded model's architecture and tokenizer, 2 layers
of width 64) for every test of mechanics, and ``EMBEDDED_MODEL`` (the real SmolLM2-135M-Instruct) only
where a test claims that something is learned or measures the real model.
"""

from __future__ import annotations

import os

# Compute in float32 on every CPU. Unsloth's CPU backend picks bfloat16 where the CPU has it (AVX512-BF16,
# AMX), float32 elsewhere; the tests compare logits, losses and adapters at float32 tolerances, so they
# pin float32 (Unsloth's own switch, inherited by every notebook kernel and subprocess the tests start).
# `make run` and users keep Unsloth's choice.
os.environ["UNSLOTH_CPU_BF16"] = "0"

# `make test` runs two test processes (pytest-xdist). Each gets its share of the cores, set before torch is
# imported so that every notebook kernel, torchrun worker and subprocess a test starts inherits it: two
# processes wanting both cores each run many times slower than one; with a core each, the tiny-model
# notebook runs (import-bound) finish side by side in the time of one.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    from loralab.params.runtime_check import usable_cores  # torch-free: imports nothing that loads torch

    os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import json
from pathlib import Path

import pytest

from loralab.params.names import EMBEDDED_PREFIX

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = EMBEDDED_PREFIX + "tiny-random-llama"
EMBEDDED_MODEL = EMBEDDED_PREFIX + "smollm2-135m-instruct"


def pytest_configure(config) -> None:
    """Unsloth first, before any test module imports transformers, PEFT or TRL (which it patches), in every
    process that runs tests; not in pytest-xdist's controller, which only hands tests out (8 s of CPU less
    before the test processes start)."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    import gc

    gc.disable()  # the test process's own setting: the collector's passes over the imports find no garbage
    try:
        import unsloth  # noqa: F401
    finally:
        gc.freeze()  # before any test: nothing but imports alive
        gc.enable()


def pytest_collection_finish(session) -> None:
    """What collection built (the test modules, their items and parameters) lives as long as the process: out of
    the collector's reach from here (``gc.freeze``), so that its full passes during the tests skip it: the
    automatic ones and the ``gc.collect()`` that accelerate runs as every ``Trainer.train`` starts and ends."""
    import gc

    gc.freeze()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def embedded_config() -> dict:
    """config.json of the embedded model (built by `make setup`, or here on first use)."""
    from loralab.model.embedded import resolve_model_path

    return json.loads((Path(resolve_model_path(EMBEDDED_MODEL)) / "config.json").read_text())


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
def default_cli_run(tmp_path_factory) -> tuple[Path, str, str]:
    """``make run``'s command on the embedded model (its default params), shared by the tests that read it.

    The one notebook-01 run of the suite on the real model: the tests claim from it that QLoRA learns the
    embedded task (JSON shape 0.00 -> >= 0.8). Changed from the defaults: no retention check (that is
    tests/test_retention.py's run), 8 held-out questions answered instead of 30 and the held-out loss on
    the same 8 of the 69 (eval_split eval[:8]: at 24 rows the held-out loss before and after training took
    9 s of the run, py-spy, AVX-512 kind, a thread; it falls from ~3.6 to ~0.6 either way),
    report_to: tensorboard, and a fake HF_TOKEN in the environment.
    (run folder, what the terminal got, that token). Used by tests/test_notebook_01.py and
    tests/test_tracking.py.
    """
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("default-cli")
    # without PYTEST_*: ipykernel then captures its fd 2 into the cells, as in a user's run (not under pytest)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORALAB_PROGRESS", "TENSORBOARD_", "PYTEST_"))}
    env["HF_TOKEN"] = FAKE_HF_TOKEN
    done = subprocess.run([sys.executable, "-m", "loralab.cli", "run", "notebooks/01_qlora_finetune.ipynb", "-f",
                           "params/01_qlora_finetune/default.yaml", "-p", "retention_tasks", "[]",
                           "-p", "eval_examples", "8", "-p", "eval_split", "eval[:8]",
                           "-p", "report_to", "tensorboard", "--runs-root", str(root)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return next(root.iterdir()), done.stdout + done.stderr, FAKE_HF_TOKEN


@pytest.fixture(scope="session")
def retention_mlflow_run(tmp_path_factory) -> Path:
    """Notebook 01 on the tiny random model, 20 steps, the local retention task, report_to: mlflow (SQLite).

    Shared by tests/test_retention.py (the retention numbers) and tests/test_tracking.py (the MLflow run).
    """
    from loralab.runs.runner import run_notebook

    params = {"model_name": TINY_MODEL, "max_steps": 20, "learning_rate": 3e-3, "warmup_steps": 0, "eval_examples": 4,
              "eval_split": "eval[:8]",
              "show_examples": 0, "save_steps": 0, "retention_tasks": ["loralab_general_knowledge"], "retention_limit": 32,
              "report_to": "mlflow"}
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MLFLOW_TRACKING_URI", raising=False)
        return run_notebook(REPO_ROOT / "notebooks" / "01_qlora_finetune.ipynb", params,
                            runs_root=tmp_path_factory.mktemp("retention"), run_name="retention", timeout_s=900)


@pytest.fixture(scope="session")
def tiny_sft_adapter(tmp_path_factory) -> Path:
    """A tiny notebook 01 run on the short-answer task (4 steps): the SFT adapter that notebook 04's DPO run
    and notebook 05's GRPO run start from (tests/test_notebook_04.py and tests/test_notebook_05.py, one unit
    of work so that the run is made once)."""
    from loralab.runs.runner import run_notebook

    params = {"model_name": TINY_MODEL, "load_in_4bit": False, "lora_r": 8, "lora_alpha": 16, "max_steps": 4,
              "per_device_train_batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 0,
              "dataset": "embedded/short-answers", "eval_dataset": "embedded/short-answers",
              "eval_scorers": ["contains"], "eval_examples": 2, "max_new_tokens": 8, "show_examples": 0,
              "save_steps": 0, "max_seq_length": 96}
    run = run_notebook(REPO_ROOT / "notebooks" / "01_qlora_finetune.ipynb", params,
                       runs_root=tmp_path_factory.mktemp("tiny-sft"), run_name="sft", timeout_s=900)
    return run / "adapter"


@pytest.fixture(scope="session")
def tiny_bnb4_base(tmp_path_factory) -> Path:
    """The tiny random model pre-quantized and saved by bitsandbytes on CPU, as Unsloth's ``*-bnb-4bit`` folders are
    (NF4, double quantization, bf16 compute dtype in its config.json): a base that holds no 16-bit weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from loralab.model.embedded import resolve_model_path

    source = resolve_model_path(TINY_MODEL)
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(source, quantization_config=quantization, dtype=torch.bfloat16)
    folder = tmp_path_factory.mktemp("bnb4") / "tiny-random-llama-bnb-4bit"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return folder


# --- The budget of the tests that load a model -------------------------------------------------------
BUDGET_FILE = REPO_ROOT / "tests" / "budget.txt"
_model_test_seconds: dict[str, float] = {}


def model_test_budget_s() -> float:
    """The one number in tests/budget.txt (comment lines start with #)."""
    lines = [line.strip() for line in BUDGET_FILE.read_text().splitlines()]
    return float(next(line for line in lines if line and not line.startswith("#")))


def pytest_runtest_logreport(report) -> None:
    """Add up setup, call and teardown (shared fixtures included) of every test marked slow."""
    if "slow" in report.keywords:
        _model_test_seconds[report.nodeid] = _model_test_seconds.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    """Printed, never asserted: these machines vary 3x from one day to the next."""
    if not _model_test_seconds:
        return
    total, budget = sum(_model_test_seconds.values()), model_test_budget_s()
    verdict = "within" if total <= budget else "OVER"
    terminalreporter.write_line(
        f"tests that load a model: {len(_model_test_seconds)} took {total:.0f} s, {verdict} the budget of "
        f"{budget:.0f} s ({BUDGET_FILE.relative_to(REPO_ROOT)}, set for the slower AVX2 machine kind)")


# --- Two test processes: which tests go together, and in what order ---------------------------------------
# A test file is one unit of work for pytest-xdist: its module fixtures (a notebook run shared by its tests)
# then run once. The files that read the same session fixture above are one unit. Units are handed out in
# collection order, the next one to whichever process runs dry; so the longest units go first, or a long
# run started last would end alone on one core. Heaviest first, as measured (AVX-512 kind, 2026-12-05, a
# thread each: 256, 146, 120, 101, 50, 49, 47, 46, 45, 40, 27, 26, 20, 20, 16, 15, 14, 8, 8 and 7 s); files not
# named here take seconds.
SHARED_UNITS = {"notebook 01's shared runs": ("test_notebook_01.py", "test_tracking.py", "test_retention.py"),
                "notebooks 04 and 05 (one SFT adapter)": ("test_notebook_04.py", "test_notebook_05.py")}
HEAVIEST_FIRST = ("test_notebook_04.py", "test_notebook_01.py", "test_data_parallel.py", "test_memory_estimates.py",
                  "test_sweep.py", "test_resume_preference.py", "test_adapters_models.py", "test_merge_dequantized.py",
                  "test_merge_parity.py", "test_gpu_check.py", "test_resume.py", "test_lora_variants_trained.py", "test_own_columns_run.py",
                  "test_supervision.py", "test_pip_install.py", "test_eval_own_data.py", "test_notebook_00.py",
                  "test_gguf_tools.py", "test_checkpoints.py", "test_lora_math.py")


def work_unit(test_file: str) -> str:
    """The unit of work of the tests in ``test_file`` (a path)."""
    name = Path(test_file).name
    return next((unit for unit, files in SHARED_UNITS.items() if name in files), name)


def pytest_collection_modifyitems(config, items) -> None:
    """The heaviest units first (a stable sort keeps each file's order)."""
    rank = {work_unit(name): i for i, name in enumerate(HEAVIEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(str(item.path)), len(rank)))


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # pytest-xdist is a dev dependency; without it the tests run in one process
    pass
else:
    class FileUnits(LoadScopeScheduling):
        """pytest-xdist's scope scheduling with ``work_unit`` as the scope."""

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid.split("::", 1)[0])

    def pytest_xdist_make_scheduler(config, log):
        return FileUnits(config, log)
