"""The planner against published measurements of its stacks, as fixed cases: "will it fit?" answered on
the safe side. Each case: the planner's answer is at or below the published figure (the longest
sequence) or at or above it (a peak memory), and within 20% of it.

Sources:

* Unsloth, "Unsloth Benchmarks", Context length benchmarks (https://docs.unsloth.ai/basics/unsloth-benchmarks,
  also https://unsloth.ai/blog/llama3-3): Llama 3.1 (8B) Instruct, 4-bit QLoRA on all linear layers,
  rank 32, batch 1, sequences padded to the length; the longest context per GPU memory size, Unsloth
  (offloaded checkpointing + Apple's Cut Cross-Entropy) and Hugging Face + FA2. The same page's Llama 3.3
  (70B) table, measured on an 80 GB A100.
* torchtune README (https://github.com/pytorch/torchtune, README.md, "Memory and training speed", commit
  0031bfb0, Oct 2024): Llama 3.1 8B, batch 2 packed to 2048 tokens, one RTX 4090, peak memory: LoRA
  16.2 GiB, QLoRA 7.4 GiB (recipes llama3_1/8B_lora_single_device and 8B_qlora_single_device: rank 8).

The tables' "GB" is read as the card's GiB, what ``plan()`` takes. The same table lives in
docs/planner.md ("Published references"); ``test_docs_table_matches_the_planner`` keeps them in step, and
the page's tables of several GPUs and of torchtune's 3B peaks are checked the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loralab.plan.memory import GIB, estimate_memory, setup_for
from loralab.plan.planner import plan

WITHIN = 0.20
UNSLOTH_URL = "https://docs.unsloth.ai/basics/unsloth-benchmarks"
TORCHTUNE_URL = "https://github.com/pytorch/torchtune"

# (model, card GiB, stack, published longest context; 0 = "OOM")
CONTEXT = [
    *[
        ("llama-3.1-8b", gb, "unsloth", n)
        for gb, n in {8: 2_972, 12: 21_848, 16: 40_724, 24: 78_475, 40: 153_977, 48: 191_728, 80: 342_733}.items()
    ],
    *[
        ("llama-3.1-8b", gb, "hf", n)
        for gb, n in {8: 0, 12: 932, 16: 2_551, 24: 5_789, 40: 12_264, 48: 15_502, 80: 28_454}.items()
    ],
    # Llama 3.3 70B has Llama 3.1 70B's shapes.
    ("llama-3.1-70b", 48, "unsloth", 12_106),
    ("llama-3.1-70b", 80, "unsloth", 89_389),
    ("llama-3.1-70b", 48, "hf", 0),
    ("llama-3.1-70b", 80, "hf", 6_916),
]
# Safe but more than 20% short. Each Unsloth table is a straight line in the card's memory (the 8B table's
# seven rows to the token; the 70B rows were run on one 80 GB A100), so it gives a fixed memory (the line at
# 0 tokens) and a cost per token. Per token the planner is 6-8% above both lines: its long-sequence margin.
# Fixed memory: 0.05 GiB above the 8B line, 1.17 GiB above the 70B line. Every fixed term is read from the
# stack's code (test_fixed_memory_is_where_the_70b_48gb_row_falls_short); with 48 GiB, 92% of the card is
# fixed memory, and 1.17 GiB of it is 29% of the context. The same page's "Unsloth (Old)" line for the same
# model and weights puts the fixed memory 0.74 GiB lower than its new line, so the published 70B fixed memory
# is not pinned to better than that. Unsloth does not publish the 70B run's optimizer: adamw_8bit would close
# the gap at 70B (2.3 GiB less) but put the 8B rows above the planner (0.47 GiB less there).
TOO_SHORT = {("llama-3.1-70b", 48, "unsloth")}

_TT_LORA = ("q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_TT_QLORA = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# (label, fields for setup_for("torchtune"), published peak GiB)
TORCHTUNE_PEAK = [
    ("LoRA", {"method": "lora", "batch": 2, "seq": 2048, "r": 8, "targets": _TT_LORA}, 16.2),
    ("QLoRA", {"method": "qlora", "batch": 2, "seq": 2048, "r": 8, "targets": _TT_QLORA}, 7.4),
]


def planned_context(model: str, gb: float, stack: str) -> int:
    return plan(model, gpu_gb=gb, batch=1, r=32, stack=stack).fits["qlora"].max_seq


def _id(case) -> str:
    return f"{case[0]}-{case[1]}GB-{case[2]}"


@pytest.mark.parametrize("model,gb,stack,published", CONTEXT, ids=[_id(c) for c in CONTEXT])
def test_longest_context_is_at_or_below_the_published_one_and_within_20_percent(model, gb, stack, published):
    ours = planned_context(model, gb, stack)
    assert ours <= published, f"{model} {gb} GB {stack}: planned {ours:,} above published {published:,}"
    if published == 0:  # "OOM": nothing fits, and the planner says so
        return
    if (model, gb, stack) in TOO_SHORT:
        pytest.xfail(f"safe but {ours / published - 1:+.0%} (see TOO_SHORT)")
    assert ours >= (1 - WITHIN) * published, f"{model} {gb} GB {stack}: planned {ours:,} vs {published:,}"


@pytest.mark.parametrize("label,fields,published_gib", TORCHTUNE_PEAK, ids=[c[0] for c in TORCHTUNE_PEAK])
def test_torchtune_8b_peak_is_at_or_above_the_published_one_and_within_20_percent(label, fields, published_gib):
    ours = estimate_memory("llama-3.1-8b", setup_for("torchtune", **fields)).total_gib
    assert published_gib <= ours <= (1 + WITHIN) * published_gib, f"{label}: {ours:.2f} vs {published_gib} GiB"


def test_docs_table_matches_the_planner():
    """docs/planner.md's table of published references shows what the planner answers today."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "planner.md").read_text()
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"\d+ GB", cells[1]):
            rows[(cells[0], cells[1], cells[2])] = (cells[3], cells[4])
    for model, gb, stack, published in CONTEXT:
        source = ("Unsloth" if stack == "unsloth" else "HF + FA2") + (" 70B" if "70b" in model else " 8B")
        key = (source, f"{gb} GB", "QLoRA r=32, batch 1: longest context")
        assert key in rows, f"missing docs row {key}"
        assert rows[key] == (f"{published:,}" if published else "OOM", f"{planned_context(model, gb, stack):,}")
    for label, fields, published_gib in TORCHTUNE_PEAK:
        ours = estimate_memory("llama-3.1-8b", setup_for("torchtune", **fields)).total_gib
        key = ("torchtune 8B", "24 GB", f"{label} r=8, batch 2 x 2,048: peak GiB")
        assert rows.get(key) == (f"{published_gib}", f"{ours:.1f}"), f"docs row {key}"


def _published_line(model: str, stack: str) -> tuple[float, float]:
    """(fixed GiB, bytes per token) of the straight line through a table's two largest cards."""
    (gb1, n1), (gb2, n2) = sorted((gb, n) for m, gb, s, n in CONTEXT if m == model and s == stack and n)[-2:]
    per_token = (gb2 - gb1) * GIB / (n2 - n1)
    return gb1 - n1 * per_token / GIB, per_token


def _planned_line(model: str) -> tuple[float, float]:
    short, long = (estimate_memory(model, setup_for("unsloth", method="qlora", batch=1, r=32, seq=n))
                   for n in (1_000, 2_000))
    return short.static_bytes / GIB, (long.total_bytes - short.total_bytes) / 1_000


def test_fixed_memory_is_where_the_70b_48gb_row_falls_short():
    """The analysis behind TOO_SHORT, pinned: per token the planner keeps its margin over both Unsloth
    tables; its fixed memory (4-bit weights and their constants, Unsloth's dequantization buffer, bf16
    embeddings and lm_head, fp32 LoRA weights, their gradients and AdamW states, the CUDA runtime) is the
    8B line's and 1.2 GiB above the 70B line's. If a change closes that gap, this test says so."""
    for model, gap in (("llama-3.1-8b", (0.0, 0.1)), ("llama-3.1-70b", (1.0, 1.3))):
        fixed, per_token = _published_line(model, "unsloth")
        our_fixed, our_per_token = _planned_line(model)
        assert 1.0 < our_per_token / per_token < 1 + WITHIN, (model, our_per_token, per_token)
        assert gap[0] <= our_fixed - fixed <= gap[1], (model, our_fixed, fixed)
    assert _planned_line("llama-3.1-70b")[0] / 48 > 0.9  # a 48 GiB card is almost all fixed memory


def test_plan_says_which_margin_it_keeps():
    p = plan("llama-3.1-8b", gpu_gb=24, batch=1, r=32)
    assert p.to_dict()["margin"].startswith("margin kept: +20%")
    assert p.fits["qlora"].estimate.term("long-sequence margin") > 0
    cpu = estimate_memory("llama-3.1-8b", setup_for("hf", runtime_overhead_gb=0.0))
    assert cpu.term("long-sequence margin") == 0 and cpu.margin.startswith("margin kept: none")


# docs/planner.md's table of several GPUs: (model, GPUs, GiB per GPU, strategy or "-" for one GPU)
GPU_ROWS = [
    ("llama-3.1-70b", 1, 48, "-"),
    ("llama-3.1-70b", 2, 48, "ddp"),
    ("llama-3.1-70b", 2, 48, "fsdp"),
    ("llama-3.1-70b", 2, 40, "ddp"),
    ("llama-3.1-70b", 2, 40, "fsdp"),
    ("llama-3.1-8b", 2, 16, "ddp"),
    ("llama-3.1-8b", 2, 16, "fsdp"),
]


def gpus_table_row(model: str, gpus: int, gb: float, strategy: str) -> str:
    """One row of docs/planner.md's several-GPU table, as the planner answers it (batch 2 x 2,048, r=16)."""
    p = plan(model, gpu_gb=gb, gpus=gpus, strategy="ddp" if strategy == "-" else strategy)

    def cell(method: str) -> str:
        f = p.fits[method]
        comm = f", {f.comm_mb:,.0f} MB" if gpus > 1 else ""
        return f"{f.estimate.total_gib:.1f} ({'fits' if f.fits else 'no'}){comm}"

    sharded = [a.message.split(":")[0] for a in p.advice if a.topic == "fits only sharded"]
    decision = p.decision + "".join(f': "{m}"' for m in sharded)
    return f"| {model}, {gpus} x {gb:g} GiB | {strategy} | {cell('lora')} | {cell('qlora')} | {decision} |"


def test_docs_gpus_table_matches_the_planner():
    text = (Path(__file__).resolve().parents[1] / "docs" / "planner.md").read_text()
    for row in GPU_ROWS:
        assert gpus_table_row(*row) in text, f"docs/planner.md lacks: {gpus_table_row(*row)}"


def test_docs_torchtune_3b_table_matches_the_estimates():
    from test_memory_estimates import PUBLISHED

    text = (Path(__file__).resolve().parents[1] / "docs" / "planner.md").read_text()
    prefix = "torchtune Llama-3.2-3B "
    rows = [(label[len(prefix):], model, fields, pub) for label, model, fields, pub in PUBLISHED
            if label.startswith(prefix)]
    assert len(rows) == 4
    for setup, model, fields, published_gib in rows:
        ours = estimate_memory(model, setup_for("torchtune", **fields)).total_gib
        row = f"| {setup} | {published_gib} | {ours:.1f} | {ours / published_gib - 1:+.1%} |"
        assert row in text, f"docs/planner.md lacks: {row}"
