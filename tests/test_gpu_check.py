"""bench/gpu_check.py: its pure parts (FLOP formula, spec sheets, planner setting, exit code) and one whole
tiny-shape run on the CPU, so the script is known to work before a GPU ever runs it; scripts/gpu_wheels.py,
which brings the packages to a bare machine."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"
WHEELS = REPO / "scripts" / "gpu_wheels.py"


@pytest.fixture(scope="module")
def check():
    return _module(SCRIPT)  # module level is stdlib only: nothing heavy loads here


def test_flops_per_token_is_6n_plus_the_attention_term(check):
    """Llama-3.1-8B at seq 2048: 6 x 8.03B + 12 x 32 layers x 4096 x 2048 = 51.4 GFLOP per token."""
    n = 8_030_261_248
    assert check.flops_per_token(n, 32, 4096, 2048) == 6 * n + 12 * 32 * 4096 * 2048
    assert check.flops_per_token(n, 32, 4096, 2048) == pytest.approx(51.40e9, rel=1e-3)
    # 2,000 tokens/s of that on a 989 TFLOP/s H200 is 10.4% MFU
    assert check.mfu(2000.0, check.flops_per_token(n, 32, 4096, 2048), 989.0) == pytest.approx(0.1039, abs=1e-3)


@pytest.mark.parametrize(("name", "tflops"), [
    ("NVIDIA H200", 989.0), ("NVIDIA H200 NVL", 835.0), ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0), ("NVIDIA H100 NVL", 835.0), ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100-PCIE-40GB", 312.0), ("NVIDIA L40S", 362.0), ("NVIDIA L4", 121.0), ("Tesla T4", 65.0),
])
def test_spec_sheet_lookup_by_device_name(check, name, tflops):
    peak, source = check.spec_sheet(name)
    assert peak == tflops
    assert "datasheet" in source


@pytest.mark.parametrize("name", ["NVIDIA GeForce RTX 4090", "cpu", "NVIDIA L40", "Tesla V100-SXM2-16GB"])
def test_no_spec_sheet_means_no_mfu(check, name):
    assert check.spec_sheet(name) is None


def test_the_8b_shape_is_the_planners_llama_3_1_8b(check, tmp_path):
    """The config the script builds has the parameter count of the real model (8,030,261,248)."""
    from loralab.plan.architectures import get_architecture

    (tmp_path / "config.json").write_text(json.dumps({**check.model_config("llama-3.1-8b"), "model_type": "llama"}))
    arch = get_architecture(str(tmp_path))
    assert arch.param_count() == get_architecture("llama-3.1-8b").total_params == 8_030_261_248
    assert check.model_config("llama-3.1-8b", layers=8)["num_hidden_layers"] == 8
    assert check.mismatched_config(check.model_config("tiny"), check.model_config("tiny")) == ""
    assert "num_hidden_layers 2 != 3" in check.mismatched_config(check.model_config("tiny"),
                                                                 check.model_config("tiny", layers=3))


def test_planner_models_each_path_as_it_runs(check):
    args = check.parse_args(["--shape", "tiny"])
    assert check.planner_setup("loralab_qlora", True, "bf16", args) == ("unsloth", {
        "method": "qlora", "batch": 2, "seq": 64, "r": 16, "compute_dtype": "bf16", "gradient_checkpointing": "offload"})
    stack, fields = check.planner_setup("hf_lora16", False, "fp32", args)
    assert stack == "hf" and fields["method"] == "lora" and fields["gradient_checkpointing"] == "standard"
    assert fields["runtime_overhead_gb"] == 0.0
    no_ckpt = check.parse_args(["--shape", "tiny", "--no-gradient-checkpointing"])
    assert check.planner_setup("loralab_lora16", False, "fp32", no_ckpt)[1]["gradient_checkpointing"] == "none"


def test_shape_defaults_and_overrides(check):
    big = check.parse_args([])
    assert (big.shape, big.batch, big.seq, big.warmup, big.paths) == ("llama-3.1-8b", 4, 2048, 2, list(check.PATHS))
    tiny = check.parse_args(["--shape", "tiny", "--max-seq-length", "32", "--paths", "hf_lora16"])
    assert (tiny.batch, tiny.seq, tiny.steps, tiny.threads, tiny.paths) == (2, 32, 3, 1, ["hf_lora16"])
    short = check.parse_args(["--shape", "tiny", "-s", "32", "-b", "3", "-r", "8"])
    assert (short.seq, short.batch, short.r) == (32, 3, 8)


def test_an_old_option_name_is_refused_with_its_name_now(check, capsys):
    with pytest.raises(SystemExit) as stop:
        check.parse_args(["--shape", "tiny", "--seq", "32"])
    assert stop.value.code == 2
    assert "error: --seq is now --max-seq-length (short: -s)" in capsys.readouterr().err


def test_a_missing_package_skips_a_path_with_its_reason(check, monkeypatch):
    """No unsloth: no loralab path; no bitsandbytes: no QLoRA; the reason names the module."""
    assert check._needs("loralab_qlora")[:2] == ["pydantic", "unsloth"] and "bitsandbytes" in check._needs("hf_qlora")
    assert "bitsandbytes" not in check._needs("hf_lora16") and "unsloth" not in check._needs("hf_lora16")
    monkeypatch.setattr(check, "_needs", lambda path: ["json", "no_such_module_for_gpu_check"])
    reason = check._missing("hf_qlora")
    assert reason.startswith("no_such_module_for_gpu_check does not import (ModuleNotFoundError")


def test_an_unknown_path_is_refused_before_anything_runs():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--paths", "hf_lora16,hf_lora8"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2
    assert "hf_lora8" in proc.stderr and "loralab_qlora" in proc.stderr


def test_a_skipped_path_fails_the_check(check, capsys):
    """Every path asked for must run: one skipped (its packages missing) or failed makes the exit 1."""
    ok = {"status": "ok"}
    assert check.exit_code({"hf_lora16": ok, "hf_qlora": ok}) == 0
    skipped = {"status": "skipped", "reason": "bitsandbytes does not import (ModuleNotFoundError)"}
    assert check.exit_code({"hf_lora16": ok, "hf_qlora": skipped}) == 1
    assert "hf_qlora skipped: bitsandbytes does not import" in capsys.readouterr().out
    assert check.exit_code({"hf_lora16": {"status": "failed", "reason": "exit 1: CUDA out of memory"}}) == 1


def test_every_path_skipped_exits_non_zero(check, tmp_path):
    """The whole check on a machine without pydantic (a bare GPU machine): every path is skipped, exit 1."""
    hide = tmp_path / "hide" / "pydantic"  # every path needs it
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text("raise ImportError('pydantic hidden by the test')\n")
    hide = hide.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(REPO / "src")])}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--shape", "tiny"], capture_output=True, text=True,
                          check=False, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    for name in check.PATHS:
        assert f"{name} skipped:" in proc.stdout, name


def test_wheels_split_into_parts_under_the_cap():
    wheels = _module(WHEELS)
    mib = 2**20
    sizes = {"bitsandbytes.whl": 43 * mib, "pyarrow.whl": 42 * mib, "unsloth.whl": 29 * mib, "trl.whl": 1 * mib,
             "unsloth_zoo.whl": 3 * mib, "huge.whl": 70 * mib}
    parts = wheels.split_wheels(sizes, 56 * mib)
    assert sorted(n for p in parts for n in p) == sorted(sizes)
    assert ["huge.whl"] in parts  # over the cap: alone
    assert all(sum(sizes[n] for n in p) <= 56 * mib for p in parts if p != ["huge.whl"])
    assert len(parts) == 4


def test_the_installer_skips_installed_and_missing_wheels(tmp_path):
    """An installed distribution (here pytest) is never reinstalled; an empty folder installs nothing."""
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "pytest-0.0.1-py3-none-any.whl").write_bytes(b"not a wheel")
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, str(WHEELS), "install", str(tmp_path / "full"), str(tmp_path / "empty")],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "pytest-0.0.1-py3-none-any.whl: already installed, skipped" in proc.stdout
    assert f"{tmp_path / 'empty'}: no wheels" in proc.stdout
    assert "transformers" in proc.stdout and "python 3." in proc.stdout  # the list of what is installed


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_tiny_run_measures_every_path_on_cpu(tmp_path):
    """The whole script on a CPU: every path trains, with tokens/s, a peak and the planner's estimate."""
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "UNSLOTH_CPU_BF16": "0"}
    started = time.time()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--shape", "tiny", "--out", str(out)],
                          capture_output=True, text=True, check=False, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report) >= {"shape", "device", "base_params", "settings", "flops_per_token", "flops_formula",
                           "peak_tflops", "peak_source", "peak_kind", "cuda", "paths"}
    assert report["shape"] == "tiny" and report["cuda"] is False
    assert report["peak_source"] == "n/a (no spec sheet for CPU)"
    assert list(report["paths"]) == ["loralab_qlora", "loralab_lora16", "hf_qlora", "hf_lora16"]
    for name, r in report["paths"].items():
        assert r["status"] == "ok", (name, r.get("reason"))
        assert r["tokens_per_s"] > 0 and r["peak_gb"] > 0 and r["planner_gb"] > 0, name
        assert r["timed_tokens"] == 3 * 2 * 64 and r["tokens_counted"], name
        assert r["mfu"] is None and r["dtype"] == "float32", name
        assert r["planner_setup"]["method"] == ("qlora" if name.endswith("qlora") else "lora")
        assert 6.0 < r["first_loss"] < 8.0, name  # random weights over a 1024-token vocabulary: ~ln(1024)
    for name in report["paths"]:  # one table row per path
        assert any(line.startswith(name + " ") and "n/a" in line for line in proc.stdout.splitlines()), name
    assert "MFU: n/a (no spec sheet for CPU)" in proc.stdout
    print(f"tiny gpu_check run: {time.time() - started:.0f} s")
