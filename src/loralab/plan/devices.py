"""Several GPUs: what each device holds, and what it sends per step, under DDP or FSDP (full shard).

    from loralab.plan.devices import Layout, comm_bytes_per_step, per_device
    from loralab.plan.memory import estimate_memory, setup_for
    s = setup_for("unsloth", method="qlora")
    one = estimate_memory("llama-3.1-70b", s)                 # one device
    two = Layout(gpus=2, strategy="fsdp")
    per_device("llama-3.1-70b", one, two).total_gib          # each of the 2 GPUs at its peak
    comm_bytes_per_step("llama-3.1-70b", s, two) / 1e6       # MB each GPU sends per step

``batch`` stays the batch of one device: activations are never divided. With one GPU (either
strategy) the estimate is returned unchanged.

* DDP: every device holds the whole single-device estimate plus PyTorch DDP's gradient buckets: the
  Reducer copies every trainable gradient into flat communication buckets (25 MiB each by default,
  ``bucket_cap_mb``), 1 x the trainable gradients in all (``gradient_as_bucket_view=False``, the
  default of torch and accelerate). Unsloth turns ``gradient_as_bucket_view`` on for full fine-tuning
  (``unsloth/models/_ddp_defaults.py``): there the gradients are views into the buckets, 0 extra.
  Per step a ring all-reduce of the gradients: each device sends ``2 (G-1)/G x`` their bytes.
* FSDP, full shard: each term marked ``sharded`` in the estimate (weights, trained weights, their
  gradients and AdamW states) is divided by G, rounded up. On top: one block's weights all-gathered
  whole while it runs (forward, recompute, backward; the prefetch of the next block is not counted);
  the root unit (embeddings, lm_head, final norm), which FSDP does not reshard after forward, so it
  stays whole from forward to the end of backward; and in backward the unsharded gradients of one
  block (full fine-tuning: and of the root unit) before their reduce-scatter. All-gathers move the
  compute dtype (``MixedPrecisionPolicy(param_dtype=bf16)``; 4-bit codes as they are); gradients move
  in the trained weights' dtype (Unsloth's FSDP2: ``reduce_dtype=float32``; accelerate reduces in
  bf16, half that part). Per step each device receives ``(G-1)/G`` of every block twice (forward,
  backward; three times with DPO's reference forward) and of the root unit once, and reduce-scatters
  ``(G-1)/G`` of the trainable gradients.
* QLoRA under FSDP: bitsandbytes packs the 4-bit codes into a tensor of dtype ``bnb_4bit_quant_storage``
  (``n / (2 x itemsize)`` elements), so a bf16 storage holds the same 0.5 B/weight as uint8: the NF4
  bytes are kept. FSDP shards them only with a floating storage dtype (accelerate leaves uint8
  Params4bit out of sharding; Unsloth's FSDP2 switches the storage to the compute dtype), which the
  estimate assumes; the quantization constants (``quant_state``) ride on the module / parameter outside
  FSDP's flat storage and stay whole on every device.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Literal

from loralab.plan.architectures import Architecture, get_architecture
from loralab.plan.lora_math import trainable_params
from loralab.plan.memory import DTYPE_BYTES, GB, MemoryEstimate, Term, TrainingSetup

STRATEGIES = ("ddp", "fsdp")
Strategy = Literal["ddp", "fsdp"]
DDP_BUCKET_MB = 25  # torch.nn.parallel.DistributedDataParallel(bucket_cap_mb=25), the default


def check_layout(gpus: object, strategy: object) -> None:
    """Raise ValueError naming the argument unless gpus is a whole number >= 1 and strategy is known."""
    if isinstance(gpus, bool) or not isinstance(gpus, numbers.Integral) or gpus < 1:
        raise ValueError(f"gpus must be a whole number >= 1 (e.g. gpus=2), got {gpus!r}.")
    if strategy not in STRATEGIES:
        raise ValueError(
            f"strategy must be 'ddp' (a full copy per GPU) or 'fsdp' (fully sharded), got {strategy!r}."
        )


@dataclass(frozen=True)
class Layout:
    """How many devices train together, and how the model is spread over them."""

    gpus: int = 1
    strategy: Strategy = "ddp"

    def __post_init__(self) -> None:
        check_layout(self.gpus, self.strategy)


def _as_arch(model: str | Architecture) -> Architecture:
    return model if isinstance(model, Architecture) else get_architecture(model)


def _block_small_params(arch: Architecture) -> int:
    """Norm weights and biases of one block (the final norm belongs to the root unit)."""
    return (arch.small_params - arch.hidden) // arch.layers


def _trained_per_block(arch: Architecture, s: TrainingSetup) -> int:
    if s.method == "full":
        return arch.linear_params_per_layer + _block_small_params(arch)
    return trainable_params(arch, s.r, s.targets) // arch.layers


def _trained_total(arch: Architecture, s: TrainingSetup) -> int:
    return arch.param_count() if s.method == "full" else trainable_params(arch, s.r, s.targets)


def block_gather_bytes(arch: Architecture, s: TrainingSetup) -> float:
    """One block's weights all-gathered whole: base linears at their stored bits (4-bit: 0.5 B per weight,
    whatever the storage dtype), the rest (and every weight of full fine-tuning) in the compute dtype."""
    c = DTYPE_BYTES[s.compute_dtype]
    if s.method == "full":
        return float((arch.linear_params_per_layer + _block_small_params(arch)) * c)
    adapter = trainable_params(arch, s.r, s.targets) // arch.layers
    return arch.linear_params_per_layer * s.weight_bits / 8 + (adapter + _block_small_params(arch)) * c


def root_gather_bytes(arch: Architecture, s: TrainingSetup) -> float:
    """The root unit all-gathered: embeddings + lm_head (once when tied) + the final norm, compute dtype."""
    return float((arch.embedding_params + arch.hidden) * DTYPE_BYTES[s.compute_dtype])


def _all_phases(s: TrainingSetup) -> Literal["AB", "ABR", "ABG", "ABRG"]:
    """Every phase of the estimate: A and B, R with a reference pass, G with GRPO's plain generation."""
    reference = s.objective == "dpo" or (s.objective == "grpo" and s.reference_pass)
    return "AB" + ("R" if reference else "") + ("G" if s.objective == "grpo" and not s.engine_gb else "")


def bucket_view(stack: str, method: str) -> bool:
    """Whether the gradients are views into DDP's buckets: Unsloth sets it for full fine-tuning only."""
    return stack == "unsloth" and method == "full"


def ddp_bucket_term(est: MemoryEstimate, as_view: bool = False) -> Term:
    """DDP's flat gradient buckets: the size of the trainable gradients, allocated when DDP wraps a model."""
    grads = est.term("gradients")
    if as_view:
        return Term(
            "DDP gradient buckets",
            0.0,
            "gradient_as_bucket_view=True (Unsloth, full fine-tuning): the gradients live in the buckets",
        )
    return Term(
        "DDP gradient buckets",
        grads,
        f"1 x the {grads / GB:.2f} GB of trainable gradients, copied into {DDP_BUCKET_MB} MiB all-reduce "
        "buckets (gradient_as_bucket_view=False, the default)",
    )


def _shard(term: Term, gpus: int) -> Term:
    return replace(
        term, bytes=float(math.ceil(term.bytes / gpus)), how=f"{term.how}; / {gpus} GPUs (FSDP shard)"
    )


def fsdp_terms(arch: Architecture, s: TrainingSetup) -> list[Term]:
    """What FSDP holds whole on top of the shards: one block and the root unit, and backward's unsharded
    gradients (one block's, plus the root's for full fine-tuning) before their reduce-scatter."""
    t = DTYPE_BYTES[s.trainable_dtype]
    block = block_gather_bytes(arch, s)
    root = root_gather_bytes(arch, s)
    block_params = arch.linear_params_per_layer + _block_small_params(arch)
    root_grads = (arch.embedding_params + arch.hidden) * t if s.method == "full" else 0
    grads = float(_trained_per_block(arch, s) * t + root_grads)
    stored = (
        f"in {s.compute_dtype}"
        if s.method == "full"
        else f"{s.weight_bits}-bit base, the rest in {s.compute_dtype}"
    )
    return [
        Term(
            "all-gathered block (FSDP)",
            block,
            f"one block's {block_params / 1e6:.0f}M weights whole while it runs ({stored}); "
            "the prefetch of the next block is not counted",
            _all_phases(s),
        ),
        Term(
            "all-gathered embeddings + lm_head (FSDP)",
            root,
            f"the root unit whole in {s.compute_dtype}: FSDP does not reshard it after forward, so it stays "
            "gathered to the end of backward",
            _all_phases(s),
        ),
        Term(
            "unsharded gradients (FSDP)",
            grads,
            f"one block's trained gradients in {s.trainable_dtype} before their reduce-scatter"
            + (" + the root unit's (embeddings, lm_head)" if s.method == "full" else ""),
            "B",
        ),
    ]


def _with_peak(est: MemoryEstimate) -> MemoryEstimate:
    return replace(est, peak_phase=max(est.phases, key=est.phase_bytes))


def per_device(
    model: str | Architecture, est: MemoryEstimate, layout: Layout, as_view: bool = False
) -> MemoryEstimate:
    """The estimate for one of ``layout.gpus`` devices; ``est`` is the single-device estimate.
    ``as_view``: DDP's gradient_as_bucket_view (see :func:`bucket_view`)."""
    if layout.gpus == 1:
        return est
    if layout.strategy == "ddp":
        terms = (*est.terms, ddp_bucket_term(est, as_view))
        note = f"Per GPU, {layout.gpus} GPUs with DDP: each holds a full copy."
    else:
        arch = _as_arch(model)
        shards = tuple(_shard(t, layout.gpus) if t.sharded else t for t in est.terms)
        terms = (*shards, *fsdp_terms(arch, est.setup))
        note = (
            f"Per GPU, {layout.gpus} GPUs with FSDP (full shard): weights and their states / {layout.gpus}."
        )
    return _with_peak(replace(est, terms=terms, notes=(*est.notes, note)))


def comm_bytes_per_step(model: str | Architecture, s: TrainingSetup, layout: Layout) -> float:
    """Bytes each device sends (and receives) per step, one forward + backward of its batch (0 on one GPU).

    DDP: ring all-reduce of the trainable gradients, ``2 (G-1)/G x`` their bytes (the gradient dtype).
    FSDP: ``(G-1)/G x`` of (every block's gathered bytes per pass x passes + the root unit's once + the
    trainable gradients in their dtype for the reduce-scatter); 2 passes (forward, backward), 3 with
    DPO's reference forward.
    """
    if layout.gpus == 1:
        return 0.0
    arch = _as_arch(model)
    g = layout.gpus
    n_train = _trained_total(arch, s)
    if layout.strategy == "ddp":
        return 2 * (g - 1) / g * n_train * DTYPE_BYTES[s.trainable_dtype]
    passes = 3 if s.objective == "dpo" or (s.objective == "grpo" and s.reference_pass) else 2
    gathered = passes * arch.layers * block_gather_bytes(arch, s) + root_gather_bytes(arch, s)
    return (g - 1) / g * (gathered + n_train * DTYPE_BYTES[s.trainable_dtype])
