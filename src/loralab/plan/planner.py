"""Will it fit, and which method? Full FT / 16-bit LoRA / QLoRA on one or several GPUs, from a config alone.

    from loralab.plan.planner import plan
    p = plan("meta-llama/Llama-3.1-8B", gpu_gb=16, batch=2, seq=2048, r=16)
    p.decision, p.reason          # "qlora", "16-bit LoRA needs 21.4 GiB ..."
    p.fits["lora"].max_batch      # largest batch at this seq that fits (0: none)
    [a.message for a in p.advice] # the tutorial's pitfalls that apply, each saying what to do
    p2 = plan("llama-3.1-70b", gpu_gb=40, gpus=2, strategy="ddp")
    p2.fits["qlora"].comm_mb      # MB each GPU sends per step (828.4)
    p2.reason                     # "... QLoRA fits only sharded: use --strategy fsdp (27.5 of 40 GiB ...)"

The decision follows the tutorial: QLoRA when memory is tight, 16-bit LoRA when it fits with
headroom (no quantization penalty, slightly faster), full fine-tuning only when it fits *and* your
evals show LoRA falls short (``lora_falls_short=True``). ``gpu_gb`` is the card's memory in GiB as
``nvidia-smi`` reports it; the estimate includes ``runtime_overhead_gb`` for the CUDA context.

With ``gpus`` > 1 every number is per device and ``batch`` is each device's batch: ``strategy="ddp"``
(a full copy per GPU) or ``"fsdp"`` (fully sharded), see :mod:`loralab.plan.devices`. ``strategy="fsdp"``
with one GPU is accepted and planned as one device (nothing to shard), with an advice saying so.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Literal

from loralab.plan.architectures import Architecture, get_architecture
from loralab.plan.devices import Layout, bucket_view, check_layout, comm_bytes_per_step, per_device
from loralab.plan.lora_math import alpha_scale, trainable_params
from loralab.plan.memory import GIB, OBJECTIVES, VLLM_SHARE, MemoryEstimate, estimate_memory, setup_for

METHODS = ("full", "lora", "qlora")
HEADROOM = 0.10  # LoRA "has headroom" when at least 10% of the card stays free
LARGE_R = 64  # the tutorial: large r (64+) only if evals say you need it
MAX_SEARCH = 1 << 20
NAMES = {"full": "Full fine-tuning", "lora": "16-bit LoRA", "qlora": "QLoRA", "none": "nothing"}
RANK = {"none": 0, "qlora": 1, "lora": 2, "full": 3}  # a later decision is a better one to reach


@dataclass(frozen=True)
class Fit:
    """One method on this GPU."""

    method: str
    estimate: MemoryEstimate
    fits: bool
    free_gib: float  # GPU memory left at the peak (negative: short by that much)
    max_batch: int  # largest batch at the requested seq that fits (0: not even batch 1)
    max_seq: int  # largest seq at the requested batch that fits (0: none)
    comm_bytes: float = 0.0  # bytes each device sends (and receives) per step (0 on one device)

    @property
    def comm_mb(self) -> float:
        return self.comm_bytes / 1e6


@dataclass(frozen=True)
class Advice:
    level: Literal["warning", "info"]
    topic: str
    message: str  # what is wrong and what to do


@dataclass(frozen=True)
class Plan:
    model: str
    gpu_gb: float
    batch: int
    seq: int
    r: int
    alpha: float
    targets: str
    stack: str
    fits: dict[str, Fit]
    decision: str  # "full", "lora", "qlora" or "none"
    reason: str
    advice: tuple[Advice, ...] = field(default_factory=tuple)
    # method -> (trainable, total) parameter counts, exact (LoRA: what PEFT's get_nb_trainable_parameters says)
    param_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    gpus: int = 1  # devices training together; every memory number is per device
    strategy: str = "ddp"  # "ddp" (a full copy per device) or "fsdp" (fully sharded)
    dora: bool = False  # DoRA adapters (LoRA + one magnitude per output row)
    objective: str = "sft"  # "sft", "dpo" (batch counts pairs) or "grpo" (batch counts prompts)
    grpo: dict = field(default_factory=dict)  # GRPO: generations, completion, beta, vllm

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "gpu_gb": self.gpu_gb,
            "gpus": self.gpus,
            "strategy": self.strategy,
            "batch": self.batch,
            "seq": self.seq,
            "r": self.r,
            "alpha": self.alpha,
            "dora": self.dora,
            "objective": self.objective,
            **({"grpo": self.grpo} if self.grpo else {}),
            "targets": self.targets,
            "stack": self.stack,
            "decision": self.decision,
            "reason": self.reason,
            "margin": next(iter(self.fits.values())).estimate.margin if self.fits else "",
            "methods": {
                m: {
                    "fits": f.fits,
                    "peak_gib": round(f.estimate.total_gib, 2),
                    "per_device_peak_gib": round(f.estimate.total_gib, 2),
                    "comm_mb_per_step": round(f.comm_mb, 1),
                    "free_gib": round(f.free_gib, 2),
                    "max_batch": f.max_batch,
                    "max_seq": f.max_seq,
                    "trainable_params": self.param_counts[m][0] if m in self.param_counts else None,
                    "total_params": self.param_counts[m][1] if m in self.param_counts else None,
                    "breakdown": f.estimate.to_dict()["terms"],
                }
                for m, f in self.fits.items()
            },
            "advice": [{"level": a.level, "topic": a.topic, "message": a.message} for a in self.advice],
        }


def _largest(fits_at, upper: int = MAX_SEARCH) -> int:
    """Largest n in [1, upper] with fits_at(n) true (memory grows with n), or 0."""
    if not fits_at(1):
        return 0
    lo, hi = 1, 2
    while hi <= upper and fits_at(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, upper + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits_at(mid) else (lo, mid)
    return lo


def _fit(arch: Architecture, method: str, gpu_gb: float, stack: str, layout: Layout, **fields) -> Fit:
    def est(**over) -> MemoryEstimate:
        single = estimate_memory(arch, setup_for(stack, method=method, **{**fields, **over}))
        return per_device(arch, single, layout, as_view=bucket_view(stack, method))

    e = est()
    budget = gpu_gb * GIB
    return Fit(
        method=method,
        estimate=e,
        fits=e.total_bytes <= budget,
        free_gib=(budget - e.total_bytes) / GIB,
        max_batch=_largest(lambda b: est(batch=b).total_bytes <= budget, 4096),
        max_seq=_largest(lambda s: est(seq=s).total_bytes <= budget),
        comm_bytes=comm_bytes_per_step(arch, e.setup, layout),
    )


def _card(gpu_gb: float, layout: Layout) -> str:
    """'48 GiB' on one GPU; '48 GiB per GPU' on several (every number is per device)."""
    return f"{gpu_gb:g} GiB" if layout.gpus == 1 else f"{gpu_gb:g} GiB per GPU"


def _decide(
    fits: dict[str, Fit], gpu_gb: float, layout: Layout, batch: int, seq: int, lora_falls_short: bool
) -> tuple[str, str]:
    """The tutorial's ladder: full FT (only if justified), 16-bit LoRA with headroom, QLoRA, or none."""
    lora, qlora, full = fits["lora"], fits["qlora"], fits["full"]
    card = _card(gpu_gb, layout)
    if lora_falls_short and full.fits:
        return "full", (
            f"Full fine-tuning fits ({full.estimate.total_gib:.1f} of {card}) and "
            "your evals say LoRA falls short: the last resort is justified."
        )
    if lora.fits and lora.free_gib >= HEADROOM * gpu_gb:
        return "lora", (
            f"16-bit LoRA fits with headroom ({lora.estimate.total_gib:.1f} of {card}): it avoids "
            "4-bit's small quality cost and trains slightly faster."
        )
    if qlora.fits:
        why = (
            "16-bit LoRA fits only tightly"
            if lora.fits
            else f"16-bit LoRA needs {lora.estimate.total_gib:.1f} GiB"
        )
        return "qlora", f"Memory is tight: {why}, QLoRA needs {qlora.estimate.total_gib:.1f} of {card}."
    has = (
        f"this GPU has {gpu_gb:g} GiB"
        if layout.gpus == 1
        else f"each of the {layout.gpus} GPUs has {gpu_gb:g} GiB"
    )
    return "none", f"Even QLoRA needs {qlora.estimate.total_gib:.1f} GiB at batch {batch} x seq {seq}; {has}."


def _only_sharded(
    fits: dict[str, Fit], sharded: dict[str, Fit], decision: str, sharded_decision: str, gpu_gb: float
) -> str:
    """'QLoRA fits only sharded: use --strategy fsdp (...)' when FSDP reaches a better decision, else ''."""
    if RANK[sharded_decision] <= RANK[decision]:
        return ""
    m = sharded_decision
    return (
        f"{NAMES[m]} fits only sharded: use --strategy fsdp ({sharded[m].estimate.total_gib:.1f} of "
        f"{gpu_gb:g} GiB per GPU with FSDP, {fits[m].estimate.total_gib:.1f} with DDP)."
    )


def _advice(
    arch: Architecture,
    r: int,
    alpha: float,
    alpha_given: bool,
    targets: str,
    decision: str,
    fits: dict[str, Fit],
    gradient_checkpointing: bool,
    layout: Layout,
) -> list[Advice]:
    out: list[Advice] = []
    if r >= LARGE_R:
        extra = trainable_params(arch, r, targets) - trainable_params(arch, 16, targets)
        out.append(
            Advice(
                "warning",
                "large rank",
                (
                    f"r={r} trains {extra / 1e6:,.0f}M more parameters than r=16 and invites overfitting. "
                    "Start at r=16 (alpha=32) and raise r only if your evals demand it."
                ),
            )
        )
    if alpha_given and alpha != 2 * r:
        out.append(
            Advice(
                "warning",
                "alpha/r scaling",
                (
                    f"alpha={alpha:g} with r={r} scales the adapter by alpha/r={alpha_scale(alpha, r):g}, not the usual 2. "
                    f"If you changed r (or alpha) alone, set alpha={2 * r} to keep the adapter's strength; "
                    "keep a different ratio only on purpose, checked by evals."
                ),
            )
        )
    if targets == "attention":
        saved = trainable_params(arch, r, "all-linear") - trainable_params(arch, r, "attention")
        out.append(
            Advice(
                "warning",
                "attention-only targets",
                (
                    f"Adapting only q/k/v/o saves {saved / 1e6:,.0f}M adapter parameters ({saved * 16 / GIB:.2f} GiB "
                    "of fp32 weights, gradients and AdamW states) but often underperforms. Use targets='all-linear' "
                    "unless memory is that tight."
                ),
            )
        )
    if decision == "qlora":
        out.append(
            Advice(
                "info",
                "4-bit is not free",
                (
                    "QLoRA has a small quality cost. On the hardest tasks, compare against a 16-bit LoRA run "
                    "(a bigger GPU, or a shorter seq) before committing."
                ),
            )
        )
    if decision == "none":
        q = fits["qlora"]
        hint = f"lower seq to {q.max_seq}" if q.max_seq else "no sequence length fits at this batch size"
        more = (
            "a GPU with more memory"
            if layout.gpus == 1
            else "GPUs with more memory (or more of them, with FSDP)"
        )
        out.append(
            Advice(
                "warning",
                "does not fit",
                (
                    f"Nothing fits: QLoRA needs {q.estimate.total_gib:.1f} GiB. Use batch 1 with gradient "
                    f"accumulation, {hint}, or {more}."
                ),
            )
        )
    if not gradient_checkpointing and not fits["qlora"].fits:
        out.append(
            Advice(
                "warning",
                "gradient checkpointing",
                (
                    "Gradient checkpointing is off: every block keeps its activations. Turn it on "
                    "(Unsloth: use_gradient_checkpointing='unsloth') to trade ~30% speed for much less memory."
                ),
            )
        )
    out += _layout_advice(fits, decision, layout)
    out.append(
        Advice(
            "info",
            "pin the base model",
            (
                "An adapter only works on the exact base weights it was trained on: record the base model id "
                "and revision next to the adapter."
            ),
        )
    )
    return out


def _layout_advice(fits: dict[str, Fit], decision: str, layout: Layout) -> list[Advice]:
    """FSDP on one GPU is one device; QLoRA under FSDP needs a floating 4-bit storage dtype to shard."""
    if layout.strategy != "fsdp":
        return []
    if layout.gpus == 1:
        return [
            Advice(
                "info",
                "fsdp on one GPU",
                "--strategy fsdp with 1 GPU has nothing to shard: planned as one device "
                "(the same numbers as ddp).",
            )
        ]
    if decision not in ("qlora", "none"):
        return []
    base = next(t for t in fits["qlora"].estimate.terms if t.name.startswith("base linear weights"))
    return [
        Advice(
            "warning",
            "4-bit under FSDP",
            (
                "The estimate assumes the 4-bit weights are sharded, which takes a 4-bit storage dtype equal to "
                "the compute dtype: BitsAndBytesConfig(bnb_4bit_quant_storage=torch.bfloat16) (the same 0.5 B per "
                "weight, packed into bf16). loralab's parallel_strategy: fsdp has Unsloth set it (UNSLOTH_FSDP2=1); "
                "elsewhere set it yourself. With the default uint8, accelerate's "
                f"FSDP leaves them whole on every GPU: {base.bytes * layout.gpus / GIB:.1f} GiB each, not "
                f"{base.bytes / GIB:.1f}."
            ),
        )
    ]


def _positive_finite(value: object) -> bool:
    """A real number (not a bool), finite and > 0: refuses nan, inf, 0 and negatives."""
    return (
        isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def plan(
    model: str | Architecture,
    gpu_gb: float,
    batch: int = 2,
    seq: int = 2048,
    r: int = 16,
    targets: str = "all-linear",
    alpha: float | None = None,
    gradient_checkpointing: bool = True,
    stack: str = "unsloth",
    lora_falls_short: bool = False,
    objective: str = "sft",
    gpus: int = 1,
    strategy: str = "ddp",
    dora: bool = False,
    generations: int = 8,
    completion: int = 256,
    beta: float = 0.0,
    vllm: bool = False,
) -> Plan:
    """Plan full FT / 16-bit LoRA / QLoRA for ``model`` on ``gpus`` GPUs with ``gpu_gb`` GiB each.

    ``objective="dpo"`` plans preference tuning: ``batch`` pairs (chosen + rejected) per step, with TRL's
    reference adapter and reference pass (``loralab.plan.memory``). ``strategy`` is ``"ddp"`` or
    ``"fsdp"`` (``loralab.plan.devices``); ``batch`` is per device. ``dora=True`` plans DoRA adapters:
    d more trainable weights per adapted layer and DoRA's extra activations (``loralab.plan.memory``).
    ``objective="grpo"`` plans GRPO: ``batch`` prompts per step, ``generations`` completions of up to
    ``completion`` tokens each after a ``seq``-token prompt, a reference pass when ``beta`` > 0, and with
    ``vllm`` the share of the GPU Unsloth's fast generation path reserves (``VLLM_SHARE``).
    """
    check_layout(gpus, strategy)
    layout = Layout(int(gpus), strategy)  # type: ignore[arg-type]
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}.")
    grpo = objective == "grpo"
    if not grpo and vllm:
        raise ValueError("vllm is GRPO's generation engine: plan it with objective='grpo'.")
    if grpo:
        for name, value, least in (("generations", generations, 2), ("completion", completion, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}.")
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not math.isfinite(beta) or beta < 0:
            raise ValueError(f"beta must be a finite number >= 0 (0: no reference pass), got {beta!r}.")
    if not _positive_finite(gpu_gb):
        raise ValueError(
            f"gpu_gb must be the GPU's memory in GiB, a finite positive number (e.g. 16 for a T4), "
            f"got {gpu_gb!r}."
        )
    for name, value, example in (("batch", batch, 2), ("seq", seq, 2048), ("r", r, 16)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1 (e.g. {name}={example}), got {value!r}.")
    if targets not in ("all-linear", "attention"):
        raise ValueError(f"targets must be 'all-linear' or 'attention', got {targets!r}.")
    alpha_given = alpha is not None
    if alpha_given and not _positive_finite(alpha):
        raise ValueError(
            f"alpha must be a finite positive number (the convention is alpha = 2r = {2 * r}), got {alpha!r}."
        )
    alpha = float(2 * r if alpha is None else alpha)
    arch = model if isinstance(model, Architecture) else get_architecture(model)
    gc_mode = {"unsloth": "offload"}.get(stack, "standard") if gradient_checkpointing else "none"
    fields = {
        "batch": batch,
        "seq": seq,
        "r": r,
        "targets": targets,
        "gradient_checkpointing": gc_mode,
        "objective": objective,
        "dora": bool(dora),
        **(
            {"generations": generations, "completion": completion, "reference_pass": beta > 0,
             "engine_gb": VLLM_SHARE * gpu_gb if vllm else 0.0}
            if grpo
            else {}
        ),
    }
    fits = {m: _fit(arch, m, gpu_gb, stack, layout, **fields) for m in METHODS}
    decision, reason = _decide(fits, gpu_gb, layout, batch, seq, lora_falls_short)
    if decision in ("lora", "qlora") and fits["full"].fits and not lora_falls_short:
        reason += " Full fine-tuning would fit too; use it only if evals show LoRA falls short."
    advice = _advice(arch, r, alpha, alpha_given, targets, decision, fits, gradient_checkpointing, layout)
    if layout.strategy == "ddp" and layout.gpus > 1:
        sharded_layout = Layout(layout.gpus, "fsdp")
        sharded = {m: _fit(arch, m, gpu_gb, stack, sharded_layout, **fields) for m in METHODS}
        better, _ = _decide(sharded, gpu_gb, sharded_layout, batch, seq, lora_falls_short)
        message = _only_sharded(fits, sharded, decision, better, gpu_gb)
        if message:
            reason += " " + message
            advice.insert(
                0, Advice("warning" if decision == "none" else "info", "fits only sharded", message)
            )
    return Plan(
        model=arch.name,
        gpu_gb=gpu_gb,
        batch=batch,
        seq=seq,
        r=r,
        alpha=alpha,
        targets=targets,
        stack=stack,
        fits=fits,
        decision=decision,
        reason=reason,
        advice=tuple(advice),
        param_counts=_param_counts(arch, r, targets, bool(dora)),
        dora=bool(dora),
        gpus=layout.gpus,
        strategy=layout.strategy,
        objective=objective,
        grpo={"generations": generations, "completion": completion, "beta": beta, "vllm": bool(vllm)} if grpo else {},
    )


def _param_counts(arch: Architecture, r: int, targets: str, dora: bool = False) -> dict[str, tuple[int, int]]:
    """(trainable, total) per method: full FT trains every weight; LoRA adds r(d+k) per adapted matrix (DoRA
    r(d+k) + d)."""
    base = arch.param_count()
    adapter = trainable_params(arch, r, targets, dora)
    return {"full": (base, base), "lora": (adapter, base + adapter), "qlora": (adapter, base + adapter)}


# Common cards, memory in GiB as the driver reports it (the marketing "16 GB" T4 shows ~15 GiB usable).
GPUS: dict[str, float] = {
    "T4 16GB": 15.0,
    "L4 24GB": 22.0,
    "RTX 4090 24GB": 23.5,
    "A100 40GB": 39.5,
    "A100 80GB": 79.2,
    "H100 80GB": 79.2,
}
