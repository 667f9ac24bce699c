"""The memory estimator against measurements: (a) peak memory measured here on CPU for the embedded
model, (b) peak GPU memory published by others, each cited. Target: within 15%.

How the CPU number is measured (``_PROBE`` below, one process): the process imports
torch/transformers/peft/bitsandbytes; for each precision it trims the heap and reads its resident set size
(RSS) as the *baseline* (the Python + torch runtime, ~420 MB, which the estimate does not model, plus
whatever the earlier precision left behind), loads the model once and attaches LoRA; then, for each
configuration in turn (without checkpointing, then with it), a warm-up AdamW step on 8 tokens creates the
optimizer's states, the kernel's peak-RSS counter is reset (``/proc/self/clear_refs`` = 5) and one training
step at the configuration's length is measured. Measured = peak RSS - baseline: the model's weights,
adapters, optimizer states, activations and loss buffers. ``MALLOC_MMAP_THRESHOLD_=65536`` makes glibc give
large tensors their own mappings, so freed tensors leave the RSS at once (otherwise the heap keeps
freed pages and the peak reads high). The CPU runs use fp32 compute: this CPU has no AVX512-BF16 and
bf16 training was measured 12x slower (243 s vs 20 s for 2 steps of 512 tokens), too slow for a test.
The 16-bit configuration is therefore an fp32 base; the bf16-specific terms (RMSNorm's fp32 upcast,
PEFT's fp32 input casts) are checked only through the published GPU numbers.

Measured on 2 shared cores (2026-11), batch 1, r=16 all-linear, estimate vs measured (MB):
fp32 base seq 128: 856 vs 881 (-2.8%), +checkpointing 701 vs 703 (-0.3%); seq 512: 1577 vs 1534
(+2.8%), +checkpointing 956 vs 962 (-0.6%); NF4 base seq 128: 490 vs 515 (-4.9%), +checkpointing
335 vs 338 (-0.9%); seq 512: 1210 vs 1179 (+2.7%), +checkpointing 590 vs 594 (-0.7%).
Until 2026-12-05 the suite ran one load per configuration and 2 AdamW steps under the counter, 16-bit
and 4-bit in two processes side by side (86 s of CPU); seq 256 then read fp32 1097 vs 1069 (+2.6%),
+checkpointing 786 vs 789 (-0.4%); NF4 730 vs 712 (+2.5%), +checkpointing 420 vs 423 (-0.9%).
The probe as it is now (2026-12-05, AVX-512 kind: 43 s in one process), estimate vs measured: fp32 seq 128
856 vs 881 (-2.8%), 256 1097 vs 1115 (-1.7%), +checkpointing 701 vs 745 (-5.9%), 786 vs 832 (-5.5%);
NF4 seq 128 490 vs 480 (+2.1%), 256 730 vs 708 (+3.1%), +checkpointing 335 vs 332 (+0.8%), 420 vs 425
(-1.2%). Longer sequences, checkpointing and NF4 still move the measurement the way the model says.
The first load a process makes carries ~25-45 MB of one-time lazy initialisation (thread pools, kernel
caches) that the estimate does not model: with one process per configuration every checkpointed run read
37-39 MB high (-4% to -10%); here the 16-bit configurations, which share the first load's baseline, carry
it (the checkpointed ones read 44-46 MB high), and the 4-bit ones do not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from loralab.plan.architectures import get_architecture
from loralab.plan.memory import GIB, TrainingSetup, estimate_memory, setup_for, tutorial_rule_gb

TOLERANCE = 0.15

# What every RSS probe process defines: resident memory from /proc, a settle before reading it, one training step.
RSS_HELPERS = """
libc = ctypes.CDLL("libc.so.6")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
def settle():
    gc.collect(); libc.malloc_trim(0)
def step(model, opt, ids):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
"""

_PROBE = r"""
import ctypes, gc, json, sys
configs = json.loads(sys.argv[1])
import torch, transformers, peft, bitsandbytes
from peft import LoraConfig, get_peft_model
from loralab.model.embedded import resolve_model_path
gc.freeze()  # imported before the baseline on purpose; the collector then skips them
""" + RSS_HELPERS + r"""path = resolve_model_path("embedded/smollm2-135m-instruct")
for bits in sorted({c["bits"] for c in configs}, reverse=True):  # one load per precision, measured from before it
    group = sorted((c for c in configs if c["bits"] == bits), key=lambda c: (c["gc"], c["seq"]))
    r = group[0]["r"]
    assert all(c["r"] == r for c in group)
    torch.manual_seed(0)
    settle(); baseline = status("VmRSS")
    kw = dict(dtype=torch.float32)
    if bits == 4:
        kw["quantization_config"] = transformers.BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, **kw)
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    for cfg in group:  # without checkpointing first, then with it (switched on once)
        if cfg["gc"] and not model.is_gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.enable_input_require_grads()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        step(model, opt, torch.randint(0, model.config.vocab_size, (cfg["batch"], 8)))  # creates AdamW's states
        ids = torch.randint(0, model.config.vocab_size, (cfg["batch"], cfg["seq"]))
        settle()
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS counter (VmHWM) to the current RSS
        step(model, opt, ids)  # the measured step: a training step with the optimizer's states in memory
        print("RESULT " + json.dumps({**cfg, "baseline": baseline, "peak": status("VmHWM")}), flush=True)
        del opt, ids
    del model
"""

LONG_SEQ = 256  # 512 measured the same way (docstring) at 1.5x the probe's time
CPU_CONFIGS = [
    {"bits": bits, "seq": seq, "gc": gc, "batch": 1, "r": 16}
    for bits in (16, 4)
    for seq in (128, LONG_SEQ)
    for gc in (False, True)
]


def _run_probe(configs: list[dict]) -> list[dict]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "TOKENIZERS_PARALLELISM": "false",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(configs)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = [json.loads(ln[len("RESULT ") :]) for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and len(lines) == len(configs), out.stderr[-3000:]
    return [{**r, "measured_bytes": r["peak"] - r["baseline"]} for r in lines]


@pytest.fixture(scope="module")
def cpu_measurements() -> list[dict]:
    """One process: the 16-bit configurations on one load of the model, then the 4-bit ones on another."""
    return _run_probe(CPU_CONFIGS)


def cpu_setup(bits: int, seq: int, gc: bool, batch: int, r: int) -> TrainingSetup:
    """The CPU probe's code path: transformers + PEFT, fp32 compute, unfused loss, no CUDA context."""
    return setup_for(
        "hf",
        method="qlora" if bits == 4 else "lora",
        batch=batch,
        seq=seq,
        r=r,
        gradient_checkpointing="standard" if gc else "none",
        compute_dtype="fp32",
        trainable_dtype="fp32",
        runtime_overhead_gb=0.0,
    )


@pytest.mark.slow
def test_estimate_matches_cpu_peak_memory_of_the_embedded_model(cpu_measurements):
    rows = []
    for m in cpu_measurements:
        est = estimate_memory(
            "embedded/smollm2-135m-instruct", cpu_setup(m["bits"], m["seq"], m["gc"], m["batch"], m["r"])
        )
        err = est.total_bytes / m["measured_bytes"] - 1
        rows.append(
            (
                m["bits"],
                m["seq"],
                m["gc"],
                round(est.total_bytes / 1e6),
                round(m["measured_bytes"] / 1e6),
                f"{err:+.1%}",
            )
        )
    print("\nbits seq gc estimate_MB measured_MB error\n" + "\n".join(map(str, rows)))
    bad = [r for r in rows if abs(float(r[-1].rstrip("%")) / 100) > TOLERANCE]
    assert not bad, f"estimates off by more than 15%: {bad}"
    # The measurements must also move the way the model says: longer sequences cost more, and
    # checkpointing saves memory at the longer length.
    by = {(m["bits"], m["seq"], m["gc"]): m["measured_bytes"] for m in cpu_measurements}
    for bits in (16, 4):
        assert by[(bits, LONG_SEQ, False)] > by[(bits, 128, False)]
        assert by[(bits, LONG_SEQ, True)] < by[(bits, LONG_SEQ, False)]
    assert by[(4, 128, False)] < by[(16, 128, False)]


# ---------------------------------------------------------------------------------------------
# Published GPU measurements.
#
# torchtune README (github.com/pytorch/torchtune, README.md, section "Memory and training speed",
# as of commit 0031bfb0, Oct 2024): Llama 3.1 8B, batch size 2, dataset packed to 2048 tokens,
# torch.compile on, single RTX 4090: LoRA 16.2 GiB, QLoRA 7.4 GiB peak memory per GPU. The recipes
# are llama3_1/8B_lora_single_device and 8B_qlora_single_device: rank 8, alpha 16, LoRA on q, v,
# output_proj (+ k for QLoRA) and the MLP, bf16 everywhere (adapters and AdamW states included),
# activation checkpointing on, CEWithChunkedOutputLoss.
#
# torchtune README, section "Optimization flags" (later revision of the same file): Llama 3.2 3B,
# batch 2, seq 4096, bf16, A100, "Peak Memory Active" after stacking packed data, compile, chunked
# CE, activation checkpointing, [optimizer-in-backward], activation offloading: LoRA 8.5 GiB, QLoRA
# 4.6 GiB; full fine-tune with compile + chunked CE 42.9 GiB, plus activation checkpointing 24.9 GiB.
# ---------------------------------------------------------------------------------------------

_TT_8B_LORA = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_TT_8B_QLORA = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

PUBLISHED = [
    # (label, model, setup fields, published GiB)
    (
        "torchtune Llama-3.1-8B LoRA 1x4090",
        "llama-3.1-8b",
        {"method": "lora", "batch": 2, "seq": 2048, "r": 8, "targets": _TT_8B_LORA},
        16.2,
    ),
    (
        "torchtune Llama-3.1-8B QLoRA 1x4090",
        "llama-3.1-8b",
        {"method": "qlora", "batch": 2, "seq": 2048, "r": 8, "targets": _TT_8B_QLORA},
        7.4,
    ),
    (
        "torchtune Llama-3.2-3B LoRA (AC + offload)",
        "llama-3.2-3b",
        {
            "method": "lora",
            "batch": 2,
            "seq": 4096,
            "r": 8,
            "targets": _TT_8B_LORA,
            "gradient_checkpointing": "offload",
        },
        8.5,
    ),
    (
        "torchtune Llama-3.2-3B QLoRA (AC + offload)",
        "llama-3.2-3b",
        {
            "method": "qlora",
            "batch": 2,
            "seq": 4096,
            "r": 8,
            "targets": _TT_8B_LORA,
            "gradient_checkpointing": "offload",
        },
        4.6,
    ),
    (
        "torchtune Llama-3.2-3B full FT + AC",
        "llama-3.2-3b",
        {"method": "full", "batch": 2, "seq": 4096},
        24.9,
    ),
    (
        "torchtune Llama-3.2-3B full FT, no AC",
        "llama-3.2-3b",
        {"method": "full", "batch": 2, "seq": 4096, "gradient_checkpointing": "none"},
        42.9,
    ),
]


@pytest.mark.parametrize("label,model,fields,published_gib", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_estimate_matches_published_gpu_peak(label, model, fields, published_gib):
    """Within 15% of torchtune's published peaks (torchtune stack: no CUDA context in "active" memory).

    Known reasons for the remaining gaps, all making the estimate high: torch.compile fuses RMSNorm and
    SwiGLU so their fp32/intermediate copies are never stored (our op count is for eager PyTorch: the
    "full FT, no AC" row, dominated by activations, is the largest at about +11%), and the chunked loss
    may free each chunk's logits sooner than the 2.75 B/element we charge.
    """
    est = estimate_memory(model, setup_for("torchtune", **fields))
    err = est.total_gib / published_gib - 1
    assert abs(err) <= TOLERANCE, (
        f"{label}: estimate {est.total_gib:.2f} GiB vs published {published_gib} GiB ({err:+.1%})"
    )


# Unsloth README ("Context length benchmarks", Llama 3.1 (8B) Instruct: "4bit QLoRA on all linear
# layers (Q, K, V, O, gate, up and down) with rank = 32 with a batch size of 1", sequences padded to
# the maximum length): longest context that trains, per GPU memory size.
UNSLOTH_CONTEXT = {8: 2_972, 12: 21_848, 16: 40_724, 24: 78_475, 40: 153_977, 48: 191_728, 80: 342_733}


@pytest.mark.parametrize("vram", sorted(UNSLOTH_CONTEXT))
def test_largest_context_matches_unsloth_published_table(vram):
    """plan()'s largest seq for the Unsloth stack vs Unsloth's table, within 15%.

    We read the table's "GB" as the card's memory in GiB (what plan() takes). Read as 1e9 bytes, the
    8 GB row collapses: QLoRA's static part (weights, adapters, CUDA context) is 7.4 GiB, so that row is
    almost all slack.
    Both of the table's columns (Unsloth and "Hugging Face + FA2"), and the rule that the planner's
    answer is at or below each published one, are in tests/test_planner_references.py.
    """
    from loralab.plan.planner import plan

    ours = plan("llama-3.1-8b", gpu_gb=vram, batch=1, r=32, stack="unsloth").fits["qlora"].max_seq
    published = UNSLOTH_CONTEXT[vram]
    assert abs(ours / published - 1) <= TOLERANCE, f"{vram} GB: ours {ours:,} vs Unsloth {published:,}"


def test_qlora_paper_base_model_footprint_disagreement_is_explained():
    """QLoRA paper (Dettmers et al. 2023, arXiv:2305.14314, section 2, "Memory Requirement of
    Parameter-Efficient Finetuning"):
    for LLaMA 7B "the 4-bit base model consumes 5,048 MB of memory".

    Our NF4 count for LLaMA-7B (hidden 4096, MLP 11008, 32 layers, vocab 32000, untied) is 6.48B
    linear weights x 4.127 bit = 3.34 GB plus embeddings and lm_head in bf16, 0.52 GB: 3.87 GB, about
    23% under the paper. The paper does not list what its number includes. Its qlora.py calls
    prepare_model_for_kbit_training, which upcasts every non-quantized weight to fp32, and casts
    embeddings and lm_head back to bf16 only for --bf16 runs (in fp16/fp32 runs they stay fp32).
    Read that way (fp32 embeddings + lm_head, no double quantization: 4.69 GB) the estimate is -7%;
    the test checks that reading to 15% and pins the bf16 reading's -23% as the unresolved gap.
    """
    llama7b = get_architecture("llama-3.1-8b").__class__(
        "llama-7b", "llama", 4096, 11008, 32, 32, 32, 128, 32000, False, 6_738_415_616, "arXiv:2302.13971"
    )
    assert llama7b.param_count() == llama7b.total_params
    bf16 = estimate_memory(llama7b, method="qlora", batch=1, seq=1, runtime_overhead_gb=0)
    base_bf16 = sum(
        bf16.term(n)
        for n in ("base linear weights (4-bit)", "NF4 quantization constants", "embeddings + lm_head + norms")
    )
    no_dq = estimate_memory(llama7b, method="qlora", batch=1, seq=1, double_quant=False)
    base_fp32_upcast = (
        no_dq.term("base linear weights (4-bit)")
        + no_dq.term("NF4 quantization constants")
        + 2 * no_dq.term("embeddings + lm_head + norms")
    )
    assert base_bf16 / 5048e6 - 1 < -TOLERANCE  # the disagreement the docstring explains
    assert abs(base_fp32_upcast / 5048e6 - 1) <= TOLERANCE


def test_tutorial_rule_and_table():
    """The tutorial's rule ``params * bits/8 * 1.2`` and its table for a 7-8B model.

    The page's comments print ~9.6, ~3.8 and ~33.6 GB for ``gpu_gb_estimate(8, 16)``, ``(8, 4)`` and
    ``(70, 4)``, but its own code returns 19.2, 4.8 and 42.0 (8e9 params x 2 B = 16 GB before the
    +20%; its prose agrees: "~140 GB in bf16" for 70B). We implement the code, not the comments.
    """
    assert tutorial_rule_gb(8, 16) == 19.2
    assert tutorial_rule_gb(8, 4) == 4.8
    assert tutorial_rule_gb(70, 4) == 42.0
    # The tutorial's table: 7-8B QLoRA "~6-10 GB", LoRA "~18 GB", full FT "~120+ GB" (16 B/param).
    qlora = estimate_memory("llama-3.1-8b", method="qlora", batch=1, seq=2048).total_gb
    lora = estimate_memory("llama-3.1-8b", method="lora", batch=1, seq=2048).total_gb
    full = estimate_memory("llama-3.1-8b", method="full", batch=1, seq=2048).total_gb
    assert 6 <= qlora <= 10 and 16 <= lora <= 22 and full >= 120


def test_terms_respond_to_their_knobs():
    base = {"method": "qlora", "batch": 2, "seq": 2048}
    e = estimate_memory("llama-3.1-8b", **base)
    no_dq = estimate_memory("llama-3.1-8b", **base, double_quant=False).term("NF4 quantization constants")
    assert no_dq / e.term("NF4 quantization constants") == pytest.approx(0.5 / 0.12695, rel=1e-3)
    assert estimate_memory("llama-3.1-8b", **{**base, "seq": 4096}).total_bytes > e.total_bytes
    assert estimate_memory("llama-3.1-8b", **base, gradient_checkpointing="none").total_bytes > e.total_bytes
    assert estimate_memory("llama-3.1-8b", **{**base, "method": "lora"}).total_bytes > e.total_bytes
    lora16 = estimate_memory("llama-3.1-8b", method="lora", batch=2, seq=2048)
    lora8 = estimate_memory("llama-3.1-8b", method="lora", batch=2, seq=2048, base_bits=8)
    assert lora8.term("base linear weights (8-bit)") == pytest.approx(
        lora16.term("base linear weights (16-bit)") / 2
    )
    assert lora8.term("int8 row scales") > 0
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        TrainingSetup(gradient_checkpointing="sometimes")
    assert e.total_bytes == pytest.approx(e.static_bytes + max(e.phase_bytes("A"), e.phase_bytes("B")))
    assert GIB == 2**30


# ---------------------------------------------------------------------------------------------
# Preference tuning (DPO) on CPU, through loralab's own path: Unsloth's CPU backend in fp32
# (UNSLOTH_CPU_BF16=0), load_model + attach_lora, TRL 1.15 DPOTrainer from build_preference_trainer
# (ref_model=None: TRL adds the frozen "ref" adapter). The embedded pairs are short, so each chosen
# and rejected answer is lengthened past max_seq_length and truncated to it: every row is seq tokens.
# Baseline as in _PROBE, after the imports; the peak counter is reset when training begins (after the
# trainer's set-up), then 2 steps run. One process (_TRAINER_PROBE) runs the DPO configurations in turn and
# then notebook 05's GRPO smoke run (below), each measured from the RSS just before its own load.
# Measured on 2 shared cores (2026-12), batch 1 pair, seq 128, r=16 all-linear, no checkpointing, estimate
# vs measured (MB), one process per configuration: fp32 base 1010 vs 1075-1076 (-6.0%/-6.1%), NF4 base 644
# vs 685-691 (-6.0 to -6.8%, two runs); part of the gap is the first configuration's one-time initialisation.
# In one process with GRPO after them (2026-12-05, AVX-512 kind, 56 s for the three): fp32 1010 vs 1080
# (-6.5%), NF4 644 vs 635 (+1.4%), GRPO smoke 1347 vs 1393 (-3.3%).
# ---------------------------------------------------------------------------------------------

# The RSS readers both trainer probes define: VmRSS / VmHWM, a heap trim, and the peak reset when training begins.
_TRAINER_PROBE_HELPERS = r"""libc = ctypes.CDLL("libc.so.6")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
def settle():
    gc.collect(); libc.malloc_trim(0)
class PeakReset(transformers.TrainerCallback):  # reset VmHWM once training starts (after set-up)
    def on_train_begin(self, args, state, control, **kw):
        settle(); open("/proc/self/clear_refs", "w").write("5")
"""

_TRAINER_PROBE = (
    r"""
import ctypes, gc, json, os, sys, tempfile
configs = json.loads(sys.argv[1])
import unsloth  # noqa: F401  (loralab's order: unsloth before transformers/trl/peft)
import torch, transformers, peft, trl, datasets, bitsandbytes
from loralab.data.preference_rows import load_preference_rows
from loralab.eval.grpo_data import prepare_grpo_data
from loralab.model.loading import attach_lora, load_model
from loralab.params.grpo_config import validate_grpo_params
from loralab.params.preference_config import validate_preference_params
from loralab.params.yaml_reader import read_params_file
from loralab.train.grpo_trainer import build_grpo_trainer
from loralab.train.preference_trainer import build_preference_trainer
gc.freeze()  # imported before the baseline on purpose; the collector then skips them
"""
    + _TRAINER_PROBE_HELPERS
    + r"""
pad = " The answer follows from counting carefully, one step after another, with no shortcut." * 40
for cfg in configs:
    torch.manual_seed(0)
    settle(); baseline = status("VmRSS")
    c = validate_preference_params({
        "load_in_4bit": cfg["bits"] == 4, "max_seq_length": cfg["seq"], "lora_r": cfg["r"],
        "lora_alpha": 2 * cfg["r"], "lora_dropout": 0.0, "use_gradient_checkpointing": cfg["gc"],
        "per_device_train_batch_size": cfg["batch"], "max_steps": 2, "warmup_steps": 0, "save_steps": 0})
    model, tok = load_model(c)
    model = attach_lora(model, c)
    rows = [{"prompt": r["prompt"],
             "chosen": [{"role": "assistant", "content": r["chosen"][0]["content"] + pad}],
             "rejected": [{"role": "assistant", "content": r["rejected"][0]["content"] + pad}]}
            for r in load_preference_rows("embedded/concise-answers", "train", "dpo")[: 2 * cfg["batch"]]]
    trainer = build_preference_trainer(model, tok, rows, c, tempfile.mkdtemp())
    trainer.add_callback(PeakReset())
    short = min(len(x["prompt_ids"]) + min(len(x["chosen_ids"]), len(x["rejected_ids"]))
                for x in trainer.train_dataset)
    trainer.train()
    print("RESULT " + json.dumps({"probe": "dpo", **cfg, "baseline": baseline, "peak": status("VmHWM"),
                                  "adapters": sorted(model.peft_config), "shortest": short}), flush=True)
    del model, trainer, tok

cfg = validate_grpo_params({**read_params_file("params/05_grpo/smoke.yaml"), "max_steps": 2, "save_steps": 0})
data = prepare_grpo_data(cfg)
torch.manual_seed(0)
settle(); baseline = status("VmRSS")
model, tok = load_model(cfg)
model = attach_lora(model, cfg)
out = tempfile.mkdtemp()
trainer = build_grpo_trainer(model, tok, data.train, data.rewards, cfg, output_dir=out, run_dir=out, vllm=False)
trainer.add_callback(PeakReset())
shapes = []
generate = trainer._generate_and_score_completions
def recorded(inputs):
    batch = generate(inputs)
    shapes.append([list(batch["prompt_ids"].shape), list(batch["completion_ids"].shape)])
    return batch
trainer._generate_and_score_completions = recorded
trainer.train()
print("RESULT " + json.dumps({"probe": "grpo", "baseline": baseline, "peak": status("VmHWM"), "shapes": shapes,
                              "r": cfg.lora_r, "generations": cfg.num_generations, "beta": cfg.beta,
                              "bits": 4 if cfg.load_in_4bit else 16, "gc": bool(cfg.use_gradient_checkpointing),
                              "trainer": [c.__name__ for c in type(trainer).__mro__]}), flush=True)
"""
)

DPO_CPU_CONFIGS = [{"bits": bits, "seq": 128, "gc": False, "batch": 1, "r": 16} for bits in (16, 4)]


@pytest.fixture(scope="module")
def trainer_cpu_measurements() -> dict:
    """One process: the DPO configurations in turn, then GRPO's smoke run ({"dpo": [...], "grpo": {...}})."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "TOKENIZERS_PARALLELISM": "false",
        "UNSLOTH_CPU_BF16": "0",
    }
    out = subprocess.run(
        [sys.executable, "-c", _TRAINER_PROBE, json.dumps(DPO_CPU_CONFIGS)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        cwd=Path(__file__).resolve().parents[1],
    )
    lines = [json.loads(ln[len("RESULT ") :]) for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and len(lines) == len(DPO_CPU_CONFIGS) + 1, (out.stdout + out.stderr)[-3000:]
    measured = [{**r, "measured_bytes": r["peak"] - r["baseline"]} for r in lines]
    return {"dpo": [m for m in measured if m["probe"] == "dpo"], "grpo": measured[-1]}


@pytest.fixture(scope="module")
def dpo_cpu_measurements(trainer_cpu_measurements) -> list[dict]:
    return trainer_cpu_measurements["dpo"]


@pytest.mark.slow
def test_dpo_estimate_matches_cpu_peak_memory_of_the_embedded_model(dpo_cpu_measurements):
    rows = []
    for m in dpo_cpu_measurements:
        assert m["adapters"] == ["default", "ref"]  # TRL added the frozen reference adapter
        assert m["shortest"] >= m["seq"]  # every row really reaches seq tokens before truncation
        setup = replace(cpu_setup(m["bits"], m["seq"], m["gc"], m["batch"], m["r"]), objective="dpo")
        est = estimate_memory("embedded/smollm2-135m-instruct", setup)
        err = est.total_bytes / m["measured_bytes"] - 1
        rows.append(
            (m["bits"], round(est.total_bytes / 1e6), round(m["measured_bytes"] / 1e6), f"{err:+.1%}")
        )
    print("\nbits estimate_MB measured_MB error\n" + "\n".join(map(str, rows)))
    bad = [r for r in rows if abs(float(r[-1].rstrip("%")) / 100) > TOLERANCE]
    assert not bad, f"DPO estimates off by more than 15%: {bad}"


@pytest.mark.parametrize("bits,gc", [(16, False), (4, False), (4, True)])
def test_dpo_estimate_adds_pairs_reference_adapter_and_reference_pass(bits, gc):
    model = "embedded/smollm2-135m-instruct"
    sft_setup = cpu_setup(bits, 128, gc, 1, 16)
    sft = estimate_memory(model, sft_setup)
    dpo = estimate_memory(model, replace(sft_setup, objective="dpo"))
    double = estimate_memory(model, replace(sft_setup, batch=2))  # SFT on the chosen + rejected rows
    if not gc:  # the measured setups: DPO costs more
        assert dpo.total_bytes > sft.total_bytes
    # With checkpointing on the "hf" stack the SFT peak is the unfused loss (128 x 49152 x 12 B = 75 MB),
    # which TRL's fused log-prob head replaces, so DPO need not cost more there; on the "unsloth" stack
    # (fused loss already) it always does:
    gpu = setup_for("unsloth", method="qlora" if bits == 4 else "lora", batch=1, seq=128, r=16)
    assert (
        estimate_memory(model, replace(gpu, objective="dpo")).total_bytes
        > estimate_memory(model, gpu).total_bytes
    )
    assert dpo.setup.tokens == 2 * sft.setup.tokens == double.setup.tokens
    # static: the SFT terms plus one copy of the adapter (no gradient, no optimizer state)
    assert dpo.term("reference adapter (ref)") == sft.term("LoRA weights")
    assert dpo.static_bytes == pytest.approx(sft.static_bytes + dpo.term("reference adapter (ref)"))
    # activations count both rows of each pair
    for name in ("activations (all blocks)", "checkpoints (block inputs)", "recomputed block", "final norm"):
        assert dpo.term(name) == pytest.approx(double.term(name))
    # the stack's unfused loss is replaced by TRL's fused log-prob head; the reference pass is phase R
    assert dpo.term("logits + loss") == 0 and dpo.term("log-prob head (TRL)") > 0
    assert dpo.phases == ("A", "B", "R") and sft.phases == ("A", "B")
    kept = sum(t.bytes for t in dpo.terms if "R" in t.phase and t.phase != "R")
    assert dpo.phase_bytes("R") == pytest.approx(kept + dpo.term("reference forward"))
    assert dpo.total_bytes == pytest.approx(dpo.static_bytes + max(map(dpo.phase_bytes, "ABR")))
    added = dpo.total_bytes - sft.total_bytes
    expected = (
        dpo.term("reference adapter (ref)")
        + max(map(dpo.phase_bytes, "ABR"))
        - max(map(sft.phase_bytes, "AB"))
    )
    assert added == pytest.approx(expected)


def test_dpo_objective_reaches_planner_and_cli_and_is_refused_when_unknown():
    from loralab.plan.cli import main
    from loralab.plan.planner import plan

    sft = plan("llama-3.1-8b", gpu_gb=24, batch=2, seq=2048)
    dpo = plan("llama-3.1-8b", gpu_gb=24, batch=2, seq=2048, objective="dpo")
    for m in ("lora", "qlora"):
        assert dpo.fits[m].estimate.setup.objective == "dpo"
        assert dpo.fits[m].estimate.total_bytes > sft.fits[m].estimate.total_bytes
        assert dpo.fits[m].max_seq < sft.fits[m].max_seq
    with pytest.raises(ValueError, match="objective"):
        plan("llama-3.1-8b", gpu_gb=24, objective="ppo")
    with pytest.raises(ValueError, match="objective"):
        TrainingSetup(objective="ppo")
    assert main(["llama-3.1-8b", "--gpu-gb", "24", "--objective", "dpo", "--json"]) == 0
    with pytest.raises(ValueError, match="--objective"):  # loralab.cli prints it as one error line
        main(["llama-3.1-8b", "--gpu-gb", "24", "--objective", "ppo"])


# --- GRPO: notebook 05's smoke params, measured as the DPO probe measures, in its process --------------------
# Baseline after the imports and the prompt rows, before the model loads; the peak counter is reset when
# training begins; then 2 steps of the smoke run (params/05_grpo/smoke.yaml: 16-bit embedded model, r=8,
# 2 prompts x 4 completions of at most 16 tokens, beta 0) run, generation included. The prompts' and
# completions' padded lengths are read from what TRL generated, and the estimate is made for them.

@pytest.fixture(scope="module")
def grpo_cpu_measurement(trainer_cpu_measurements) -> dict:
    """The end of _TRAINER_PROBE's process, after the DPO configurations."""
    m = trainer_cpu_measurements["grpo"]
    assert m["probe"] == "grpo"
    return m


def grpo_estimate_for(m: dict):
    """The planner's estimate for what the probe ran: its rows, padded prompt and completion lengths."""
    prompts, completions = [s[0] for s in m["shapes"]], [s[1] for s in m["shapes"]]
    rows, prompt = max(p[0] for p in prompts), max(p[1] for p in prompts)
    completion = max(c[1] for c in completions)
    setup = replace(cpu_setup(m["bits"], prompt, m["gc"], rows // m["generations"], m["r"]), objective="grpo",
                    generations=m["generations"], completion=completion, reference_pass=m["beta"] > 0)
    return estimate_memory("embedded/smollm2-135m-instruct", setup)


@pytest.mark.slow
def test_grpo_estimate_matches_cpu_peak_memory_of_the_smoke_run(grpo_cpu_measurement):
    m = grpo_cpu_measurement
    assert len(m["shapes"]) == 2 and "GRPOTrainer" in m["trainer"]  # two steps, each generated its completions
    est = grpo_estimate_for(m)
    assert est.setup.rows == 8 and est.setup.completion <= 16  # the smoke params: 2 prompts x 4, <= 16 tokens
    err = est.total_bytes / m["measured_bytes"] - 1
    print(f"\nGRPO smoke: estimate {est.total_bytes / 1e6:.0f} MB, measured {m['measured_bytes'] / 1e6:.0f} MB "
          f"({err:+.1%}); rows x tokens {est.setup.rows} x ({est.setup.seq} + {est.setup.completion})")
    assert abs(err) <= TOLERANCE, f"GRPO estimate off by {err:+.1%} (more than 15%)"


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_estimate_counts_completions_generation_and_the_reference_pass(beta):
    model = "embedded/smollm2-135m-instruct"
    grpo = replace(cpu_setup(16, 48, False, 2, 8), objective="grpo", generations=4, completion=16,
                   reference_pass=beta > 0)
    est = estimate_memory(model, grpo)
    sft = estimate_memory(model, replace(grpo, objective="sft", batch=8, seq=64))  # the same 8 rows of 64 tokens
    assert grpo.rows == 8 and grpo.tokens == 8 * (48 + 16) == sft.setup.tokens
    for name in ("activations (all blocks)", "final norm", "LoRA weights", "optimizer states", "gradients"):
        assert est.term(name) == pytest.approx(sft.term(name)), name
    assert est.term("reference adapter (ref)") == 0  # TRL switches the adapter off: no copy of it
    assert est.term("logits + loss") == 0 and est.term("log-prob head (TRL)") > 0
    cache = 8 * 64 * 30 * 2 * 192 * 4  # rows x tokens x blocks x (keys, values) x kv width x fp32
    assert est.term("generation (KV cache)") > cache
    assert est.phases == (("A", "B", "R", "G") if beta else ("A", "B", "G"))
    assert est.phase_bytes("G") == est.term("generation (KV cache)")  # nothing of training is alive then
    if beta:  # before the policy's forward: only its own pass
        assert est.phase_bytes("R") == est.term("reference forward") > 0
    longer = estimate_memory(model, replace(grpo, completion=160))
    assert longer.term("generation (KV cache)") > est.term("generation (KV cache)")
    assert longer.total_bytes > est.total_bytes


def test_grpo_with_vllm_counts_the_engines_share_and_no_generation_phase():
    from loralab.plan.memory import VLLM_SHARE
    from loralab.plan.planner import plan

    p = plan("qwen2.5-1.5b", gpu_gb=15, batch=2, seq=256, objective="grpo", generations=8, completion=512, vllm=True)
    est = p.fits["qlora"].estimate
    shared = sum(t.bytes for t in est.terms if t.name.startswith(("base linear weights", "NF4", "embeddings")))
    assert est.term("generation engine (vLLM)") == pytest.approx(VLLM_SHARE * 15 * GIB - shared)
    assert "G" not in est.phases and est.setup.rows == 16 and est.setup.row_len == 768
    plain = plan("qwen2.5-1.5b", gpu_gb=15, batch=2, seq=256, objective="grpo", generations=8, completion=512)
    assert "G" in plain.fits["qlora"].estimate.phases
    assert p.to_dict()["grpo"] == {"generations": 8, "completion": 512, "beta": 0.0, "vllm": True}


def test_grpo_objective_reaches_the_cli_and_its_options_are_refused_elsewhere(capsys):
    from loralab.plan.cli import UsageError, main
    from loralab.plan.planner import plan

    assert main(["embedded/smollm2-135m-instruct", "--gpu-gb", "16", "--objective", "grpo",
                 "--per-device-train-batch-size", "2", "--generations", "4", "--max-seq-length", "48",
                 "--completion-length", "16", "--beta", "0.04", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["objective"] == "grpo" and shown["grpo"]["generations"] == 4
    assert any(t["name"] == "reference forward" for t in shown["methods"]["lora"]["breakdown"])
    with pytest.raises(UsageError, match="--generations.*--objective grpo"):
        main(["llama-3.1-8b", "--gpu-gb", "24", "--generations", "4"])
    with pytest.raises(UsageError, match="--beta"):
        main(["llama-3.1-8b", "--gpu-gb", "24", "--objective", "grpo", "--beta", "-1"])
    with pytest.raises(ValueError, match="generations"):
        plan("llama-3.1-8b", gpu_gb=24, objective="grpo", generations=1)
    with pytest.raises(ValueError, match="objective='grpo'"):
        plan("llama-3.1-8b", gpu_gb=24, vllm=True)
