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
    assert main(["embedded/smollm2-135m-instruct", "--gpu-gb", "16", "--lora-r", "16", "--json"]) == 0
    methods = json.loads(capsys.readouterr().out)["methods"]
    assert isinstance(methods["qlora"]["trainable_params"], int)
    # PEFT on the embedded model, r=16 all-linear (notebook 01): trainable 4,884,480 of 139,399,488
    assert (methods["qlora"]["trainable_params"], methods["qlora"]["total_params"]) == (4_884_480, 139_399_488)


def test_cli_table_and_errors(capsys):
    assert main(["llama-3.1-8b", "--gpu-gb", "24", "-r", "128", "-a", "32"]) == 0
    out = capsys.readouterr().out
    assert "Decision" in out and "QLoRA" in out and "large rank" in out and "alpha/r scaling" in out
    from loralab.cli import main as cli_main

    assert cli_main(["plan", "no-such-model", "--gpu-gb", "16"]) == 2
    assert capsys.readouterr().out.startswith("error: Unknown model")


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


# --- several GPUs: DDP and FSDP (loralab.plan.devices) ---


def _single(model, method, stack="unsloth", **fields):
    fields = {"batch": 2, "seq": 2048, "r": 16, "gradient_checkpointing": "offload", **fields}
    setup = setup_for(stack, method=method, **fields)
    return estimate_memory(model, setup)


def test_one_gpu_plans_are_unchanged_and_fsdp_on_one_gpu_says_so():
    base = plan("llama-3.1-8b", gpu_gb=16).to_dict()
    assert plan("llama-3.1-8b", gpu_gb=16, gpus=1, strategy="ddp").to_dict() == base
    assert base["gpus"] == 1 and base["strategy"] == "ddp"
    for m in base["methods"].values():
        assert m["comm_mb_per_step"] == 0 and m["per_device_peak_gib"] == m["peak_gib"]
    one_fsdp = plan("llama-3.1-8b", gpu_gb=16, gpus=1, strategy="fsdp")
    assert {m: f["peak_gib"] for m, f in one_fsdp.to_dict()["methods"].items()} == {
        m: f["peak_gib"] for m, f in base["methods"].items()
    }
    assert "nothing to shard" in next(a.message for a in one_fsdp.advice if a.topic == "fsdp on one GPU")


def test_ddp_per_device_is_the_single_device_estimate_plus_the_gradient_buckets():
    from loralab.plan.devices import Layout, per_device

    for method in ("lora", "qlora"):
        one = _single("llama-3.1-8b", method)
        ddp = per_device("llama-3.1-8b", one, Layout(2, "ddp"))
        assert ddp.terms[: len(one.terms)] == one.terms
        assert [t.name for t in ddp.terms[len(one.terms) :]] == ["DDP gradient buckets"]
        assert ddp.term("DDP gradient buckets") == one.term("gradients") == 41_943_040 * 4  # fp32 grads
        assert ddp.total_bytes == one.total_bytes + one.term("gradients")
        p = plan("llama-3.1-8b", gpu_gb=16, gpus=2).fits[method]
        assert p.estimate.total_bytes == ddp.total_bytes
    # Unsloth makes full fine-tuning's gradients views into the buckets: no copy; hf keeps one.
    full = per_device("llama-3.1-8b", _single("llama-3.1-8b", "full"), Layout(2, "ddp"), as_view=True)
    assert full.term("DDP gradient buckets") == 0
    hf_one = _single("llama-3.1-8b", "full", stack="hf")
    hf = per_device("llama-3.1-8b", hf_one, Layout(2, "ddp"))
    assert hf.term("DDP gradient buckets") == hf_one.term("gradients") == 8_030_261_248 * 4


def test_fsdp_divides_the_sharded_terms_by_the_gpus_and_adds_what_it_gathers():
    from loralab.plan.devices import Layout, per_device

    one = _single("llama-3.1-70b", "qlora")
    sharded_names = {t.name for t in one.terms if t.sharded}
    assert sharded_names == {
        "base linear weights (4-bit)",
        "embeddings + lm_head + norms",
        "LoRA weights",
        "optimizer states",
        "gradients",
    }
    ddp = per_device("llama-3.1-70b", one, Layout(4, "ddp"))
    for g in (2, 4, 8):
        fsdp = per_device("llama-3.1-70b", one, Layout(g, "fsdp"))
        for name in sharded_names:
            assert fsdp.term(name) == pytest.approx(ddp.term(name) / g, abs=1)  # 1/G, rounded up
        static_ddp = sum(t.bytes for t in ddp.terms if t.sharded)
        static_fsdp = sum(t.bytes for t in fsdp.terms if t.sharded)
        assert static_fsdp == pytest.approx(static_ddp / g, rel=1e-9)
        # whole on every device: the NF4 constants (quant_state), the dequantized buffer, activations
        for name in ("NF4 quantization constants", "dequantized weight buffer", "recomputed block"):
            assert fsdp.term(name) == one.term(name)
    fsdp = per_device("llama-3.1-70b", one, Layout(2, "fsdp"))
    # one 70B block: 855,638,016 linear weights at 0.5 B + (2,588,672 LoRA + 16,384 norm) params in bf16
    assert fsdp.term("all-gathered block (FSDP)") == 855_638_016 * 0.5 + (2_588_672 + 16_384) * 2
    # the root unit stays gathered: embeddings + lm_head (2 x 128256 x 8192) + final norm, bf16
    assert fsdp.term("all-gathered embeddings + lm_head (FSDP)") == (2 * 128256 * 8192 + 8192) * 2
    assert fsdp.total_gib == pytest.approx(27.78, abs=0.01)  # with the 20% long-sequence margin


def test_comm_volume_per_step_follows_the_ring_formulas():
    p2, p4 = plan("llama-3.1-8b", gpu_gb=16, gpus=2), plan("llama-3.1-8b", gpu_gb=16, gpus=4)
    # DDP all-reduce: 2 (G-1)/G x 41,943,040 fp32 adapter gradients = 1 x 167.77 MB on 2 GPUs, 1.5 x on 4
    assert p2.fits["lora"].comm_mb == pytest.approx(167.77216)
    assert p4.fits["lora"].comm_mb == pytest.approx(251.65824)
    assert p2.to_dict()["methods"]["qlora"]["comm_mb_per_step"] == 167.8
    # FSDP, 16-bit LoRA on 2 GPUs: 1/2 x (2 passes x 32 blocks x (218,103,808 + 1,310,720 + 8,192) x 2 B
    #   + (2 x 128256 x 4096 + 4096) x 2 B root unit + 41,943,040 x 4 B gradients) = 15,177.6 MB
    fsdp = plan("llama-3.1-8b", gpu_gb=16, gpus=2, strategy="fsdp")
    expected = 0.5 * (2 * 32 * 219_422_720 * 2 + 1_050_677_248 * 2 + 41_943_040 * 4) / 1e6
    assert expected == pytest.approx(15_177.617408)
    assert fsdp.fits["lora"].comm_mb == pytest.approx(expected)
    assert plan("llama-3.1-8b", gpu_gb=16, gpus=1, strategy="fsdp").fits["lora"].comm_mb == 0


def test_70b_qlora_on_two_gpus_and_when_it_fits_only_sharded():
    one = plan("llama-3.1-70b", gpu_gb=48)
    assert one.decision == "qlora" and one.fits["qlora"].estimate.total_gib == pytest.approx(42.89, abs=0.01)
    ddp = plan("llama-3.1-70b", gpu_gb=48, gpus=2)  # 2 x 48 GiB: QLoRA fits even as a full copy per GPU
    fsdp = plan("llama-3.1-70b", gpu_gb=48, gpus=2, strategy="fsdp")
    assert ddp.decision == fsdp.decision == "qlora"
    assert ddp.fits["qlora"].estimate.total_gib == pytest.approx(43.67, abs=0.01)
    assert fsdp.fits["qlora"].estimate.total_gib == pytest.approx(27.78, abs=0.01)
    assert not ddp.fits["lora"].fits and not fsdp.fits["lora"].fits  # 16-bit LoRA: 137.5 / 75.0 GiB per GPU
    assert "fits only sharded" not in _topics(ddp) and "4-bit under FSDP" in _topics(fsdp)
    tight = plan("llama-3.1-70b", gpu_gb=40, gpus=2)  # 2 x A100 40GB: only FSDP fits
    assert tight.decision == "none" and "QLoRA fits only sharded: use --strategy fsdp" in tight.reason
    message = next(a.message for a in tight.advice if a.topic == "fits only sharded")
    assert "fits only sharded: use --strategy fsdp" in message
    assert plan("llama-3.1-70b", gpu_gb=40, gpus=2, strategy="fsdp").decision == "qlora"
    eight = plan("llama-3.1-8b", gpu_gb=16, gpus=2)  # QLoRA either way; 16-bit LoRA only sharded
    assert eight.decision == "qlora" and "16-bit LoRA fits only sharded" in eight.reason
    assert plan("llama-3.1-8b", gpu_gb=16, gpus=2, strategy="fsdp").decision == "lora"


def test_cli_shows_gpus_strategy_and_comm(capsys):
    assert main(["llama-3.1-70b", "--gpu-gb", "48", "--gpus", "2", "--strategy", "fsdp"]) == 0
    out = capsys.readouterr().out
    assert "2 x 48 GiB GPUs, strategy=fsdp" in out and "2 x FSDP" in out and "comm MB/step" in out
    assert "all-gathered block (FSDP)" in out
    assert main(["llama-3.1-70b", "--gpu-gb", "40", "--gpus", "2", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["gpus"], data["strategy"], data["decision"]) == (2, "ddp", "none")
    q = data["methods"]["qlora"]
    assert {"trainable_params", "total_params", "peak_gib", "fits", "max_batch", "max_seq"} <= set(q)
    assert q["per_device_peak_gib"] == q["peak_gib"] == 43.67 and q["comm_mb_per_step"] == 828.4
    assert "DDP gradient buckets" in {t["name"] for t in q["breakdown"]}
    assert any("use --strategy fsdp" in a["message"] for a in data["advice"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"gpus": 0}, "gpus must"),
        ({"gpus": 1.5}, "gpus must"),
        ({"gpus": True}, "gpus must"),
        ({"strategy": "zero3"}, "strategy must"),
    ],
)
def test_bad_layout_raises_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan("llama-3.1-8b", gpu_gb=16, **kwargs)
