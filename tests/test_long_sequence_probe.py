"""Long sequences at Llama 3's real vocabulary, measured on CPU against the estimate.

The published references (tests/test_planner_references.py) say where the planner's longest sequence
lands; this says whether the terms that grow with the sequence are counted right. A Llama-shaped model
with tiny blocks (hidden 64, 2 layers) and the real 128,256-token vocabulary makes the logits and the
loss dominate, as they do at long lengths on an 8B model; the memory a tensor takes does not depend on
the device, so a CPU measures it. The probe follows tests/test_memory_estimates.py: one process, the
resident set size after the imports as the baseline, a warm-up AdamW step (which creates its states),
the kernel's peak-RSS counter reset, then one training step (forward + backward + optimizer) measured;
``MALLOC_MMAP_THRESHOLD_`` makes glibc return freed tensors at once.

Stack modelled here: ``hf`` (transformers + PEFT, the unfused loss), fp32 compute (no AVX512-BF16 on
this CPU), with and without gradient checkpointing. Not measurable here: the GPU-only terms (the CUDA
allocator's cached fp32 block and the long-sequence margin, ``runtime_overhead_gb=0`` switches them
off), Unsloth's fused loss (a GPU kernel) and torchtune's chunked loss (torchtune is not installed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from loralab.plan.architectures import Architecture
from loralab.plan.memory import estimate_memory, setup_for
from test_memory_estimates import RSS_HELPERS

WITHIN = 0.10
# (seq, gradient checkpointing): the hf stack checkpoints by default; one run without it at the longest
CONFIGS = ((512, True), (1024, True), (2048, True), (2048, False))
R = 8
TINY = {"hidden": 64, "intermediate": 128, "layers": 2, "heads": 2, "kv_heads": 1, "head_dim": 32,
        "vocab": 128_256}

_PROBE = r"""
import ctypes, gc, json, sys
configs, tiny, r = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
import torch, transformers, peft
from peft import LoraConfig, get_peft_model
gc.freeze()
""" + RSS_HELPERS + r"""torch.manual_seed(0)
settle(); baseline = status("VmRSS")
cfg = transformers.LlamaConfig(
    hidden_size=tiny["hidden"], intermediate_size=tiny["intermediate"], num_hidden_layers=tiny["layers"],
    num_attention_heads=tiny["heads"], num_key_value_heads=tiny["kv_heads"], head_dim=tiny["head_dim"],
    vocab_size=tiny["vocab"], tie_word_embeddings=False, max_position_embeddings=8192, use_cache=False)
cfg._attn_implementation = "sdpa"
model = transformers.LlamaForCausalLM(cfg).to(torch.float32)
model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                         target_modules="all-linear", task_type="CAUSAL_LM"))
model.train()
model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
model.enable_input_require_grads()
for gc_on in (True, False):
    if not gc_on:
        model.gradient_checkpointing_disable()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    step(model, opt, torch.randint(0, tiny["vocab"], (1, 8)))
    for seq in [s for s, g in configs if g == gc_on]:
        ids = torch.randint(0, tiny["vocab"], (1, seq))
        settle()
        open("/proc/self/clear_refs", "w").write("5")
        step(model, opt, ids)
        print("RESULT " + json.dumps({"seq": seq, "gc": gc_on, "baseline": baseline, "peak": status("VmHWM")}),
              flush=True)
        del ids
    del opt
"""


def tiny_arch() -> Architecture:
    arch = Architecture(name="tiny-llama-128k", family="llama", tied_embeddings=False, total_params=0,
                        source="tests/test_long_sequence_probe.py", **TINY)
    return replace(arch, total_params=arch.param_count())


def estimate(seq: int, gc: bool) -> float:
    s = setup_for("hf", method="lora", batch=1, seq=seq, r=R, compute_dtype="fp32", trainable_dtype="fp32",
                  gradient_checkpointing="standard" if gc else "none", runtime_overhead_gb=0.0)
    return estimate_memory(tiny_arch(), s).total_bytes


def run_probe(configs=CONFIGS) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536",
           "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(list(configs)), json.dumps(TINY), str(R)],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    rows = [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and len(rows) == len(configs), out.stderr[-3000:]
    for row in rows:
        row["measured"] = row["peak"] - row["baseline"]
        row["estimate"] = estimate(row["seq"], row["gc"])
        row["ratio"] = row["estimate"] / row["measured"]
    return rows


@pytest.mark.slow
def test_long_sequence_estimate_matches_cpu_peak_at_the_real_vocabulary():
    rows = run_probe()
    print("\nstack seq gc estimate_MB measured_MB estimate/measured")
    for row in rows:
        print(f"hf {row['seq']} {row['gc']} {row['estimate'] / 1e6:.0f} {row['measured'] / 1e6:.0f} "
              f"{row['ratio']:.3f}")
    bad = [r for r in rows if abs(r["ratio"] - 1) > WITHIN]
    assert not bad, f"off by more than {WITHIN:.0%}: {bad}"


def test_tiny_model_is_dominated_by_what_grows_with_the_sequence():
    """At 2,048 tokens the logits and loss are most of the estimate, so the probe checks them."""
    s = setup_for("hf", method="lora", batch=1, seq=2048, r=R, compute_dtype="fp32", trainable_dtype="fp32",
                  runtime_overhead_gb=0.0)
    est = estimate_memory(tiny_arch(), s)
    assert est.term("logits + loss") == 2048 * 128_256 * 12
    assert est.term("logits + loss") > 0.8 * est.total_bytes


if __name__ == "__main__":  # a bench: print the ratios
    for row in run_probe():
        print(f"hf seq {row['seq']} gc {row['gc']}: estimate {row['estimate'] / 1e6:.0f} MB, measured "
              f"{row['measured'] / 1e6:.0f} MB, ratio {row['ratio']:.3f}")
