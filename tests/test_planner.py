"""plan(): fits, largest batch/seq, the tutorial's decision, pitfall advice, and the `loralab plan` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from loralab.plan.cli import main
from loralab.plan.memory import GIB, estimate_memory, setup_for
from loralab.plan.planner import GPUS, plan


def test_decision_follows_memory_pressure():
    assert plan("llama-3.1-8b", gpu_gb=15).decision == "qlora"  # T4: tight
    assert plan("llama-3.1-8b", gpu_gb=79.2).decision == "lora"  # H100: headroom
    assert plan("llama-3.1-70b", gpu_gb=79.2).decision == "qlora"  # 70B QLoRA on one big GPU
    assert plan("llama-3.1-70b", gpu_gb=15).decision == "none"
    assert plan("qwen2.5-0.5b", gpu_gb=79.2).decision == "lora"  # full FT fits but is not the default
    assert plan("qwen2.5-0.5b", gpu_gb=79.2, lora_falls_short=True).decision == "full"
    assert "Full fine-tuning would fit too" in plan("qwen2.5-0.5b", gpu_gb=79.2).reason


def test_max_batch_and_max_seq_are_the_boundary():
    p = plan("llama-3.1-8b", gpu_gb=15, batch=2, seq=2048)
    q = p.fits["qlora"]
    assert q.fits and q.max_batch >= 2 and q.max_seq >= 2048

    def total(**over):
        fields = {
            "method": "qlora",
            "batch": 2,
            "seq": 2048,
            "r": 16,
            "targets": "all-linear",
            "gradient_checkpointing": "offload",
        }
        return estimate_memory("llama-3.1-8b", setup_for("unsloth", **{**fields, **over})).total_bytes

    assert total(batch=q.max_batch) <= 15 * GIB < total(batch=q.max_batch + 1)
    assert total(seq=q.max_seq) <= 15 * GIB < total(seq=q.max_seq + 1)
    assert p.fits["full"].max_batch == 0 and not p.fits["full"].fits


def test_gpu_table_covers_the_tutorial_cards():
    assert {"T4 16GB", "L4 24GB", "RTX 4090 24GB", "A100 40GB", "A100 80GB", "H100 80GB"} <= set(GPUS)


def _topics(p):
    return {a.topic for a in p.advice}


def test_pitfall_warnings_say_what_to_do():
    clean = plan("llama-3.1-8b", gpu_gb=24)
    assert not {"large rank", "alpha/r scaling", "attention-only targets"} & _topics(clean)
    big_r = plan("llama-3.1-8b", gpu_gb=24, r=256)
    assert "large rank" in _topics(big_r)
    assert "alpha/r scaling" not in _topics(big_r)  # alpha defaults to 2r
    alpha_only = plan("llama-3.1-8b", gpu_gb=24, r=16, alpha=16)
    msg = next(a.message for a in alpha_only.advice if a.topic == "alpha/r scaling")
    assert "alpha=32" in msg and "1" in msg
    r_only = plan("llama-3.1-8b", gpu_gb=24, r=64, alpha=32)  # r changed, alpha kept
    assert "alpha=128" in next(a.message for a in r_only.advice if a.topic == "alpha/r scaling")
    attn = plan("llama-3.1-8b", gpu_gb=24, targets="attention")
    assert "all-linear" in next(a.message for a in attn.advice if a.topic == "attention-only targets")
    assert "4-bit is not free" in _topics(plan("llama-3.1-8b", gpu_gb=15))


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="GiB"):
        plan("llama-3.1-8b", gpu_gb=0)
    with pytest.raises(ValueError, match="targets"):
        plan("llama-3.1-8b", gpu_gb=16, targets="mlp")
    with pytest.raises(ValueError, match="Closest known names"):
        plan("lama-3.1-8b", gpu_gb=16)


def test_cli_json(capsys):
    assert main(["unsloth/Llama-3.1-8B-Instruct-bnb-4bit", "--gpu-gb", "16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["decision"] == "qlora" and data["methods"]["qlora"]["fits"] is True
    assert {t["name"] for t in data["methods"]["qlora"]["breakdown"]} >= {
        "NF4 quantization constants",
        "LoRA weights",
        "logits + loss",
    }


def test_cli_json_carries_the_exact_parameter_counts(capsys):
    """Integers a script can use; for the embedded model, the counts notebook 01 prints from PEFT."""
    assert main(["llama-3.1-8b", "--gpu-gb", "16", "--json"]) == 0
    methods = json.loads(capsys.readouterr().out)["methods"]
    assert methods["full"]["trainable_params"] == methods["full"]["total_params"] == 8_030_261_248
    assert methods["lora"]["trainable_params"] == methods["qlora"]["trainable_params"] == 41_943_040
    assert methods["lora"]["total_params"] == 8_030_261_248 + 41_943_040
    assert main(["embedded/smollm2-135m-instruct", "--gpu-gb", "16", "--r", "16", "--json"]) == 0
    methods = json.loads(capsys.readouterr().out)["methods"]
    assert isinstance(methods["qlora"]["trainable_params"], int)
    # PEFT on the embedded model, r=16 all-linear (notebook 01): trainable 4,884,480 of 139,399,488
    assert (methods["qlora"]["trainable_params"], methods["qlora"]["total_params"]) == (4_884_480, 139_399_488)


def test_cli_table_and_errors(capsys):
    assert main(["llama-3.1-8b", "--gpu-gb", "24", "--r", "128", "--alpha", "32"]) == 0
    out = capsys.readouterr().out
    assert "Decision" in out and "QLoRA" in out and "large rank" in out and "alpha/r scaling" in out
    assert main(["no-such-model", "--gpu-gb", "16"]) == 2
    assert "Unknown model" in capsys.readouterr().err


def test_cli_does_not_import_torch():
    code = (
        "import sys; from loralab.cli import main; main(['plan', 'llama-3.1-8b', '--gpu-gb', '16', '--json']);"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, "loralab plan imported torch"
    assert json.loads(out.stdout)["model"] == "llama-3.1-8b"
