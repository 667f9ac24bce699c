"""Training memory from a model's shapes alone, broken into terms a reader can check one by one.

    from loralab.plan.memory import TrainingSetup, estimate_memory, tutorial_rule_gb
    est = estimate_memory("llama-3.1-8b", TrainingSetup(method="qlora", batch=2, seq=2048, r=16))
    est.total_gb            # peak bytes / 1e9
    est.rows()              # [(term, GB, how it is computed), ...] for a table
    tutorial_rule_gb(8.03, 4)   # the tutorial's params * bits/8 * 1.2, for comparison
    generation_batch_size(arch, free_bytes, prompt_tokens=512, new_tokens=48, value_bytes=2, most=32)

The peak is ``static + max(phase A, phase B)``:

* static: weights (linear layers at 16/8/4 bits, NF4 quantization constants, embeddings + lm_head +
  norms in 16-bit as bitsandbytes keeps them), the trained weights, their gradients and AdamW states;
* phase A, the end of the forward pass: activations kept for backward (every block's, or one
  checkpoint per block with gradient checkpointing) plus the logits and the loss's buffers;
* phase B, inside backward: checkpoints + one block recomputed, plus full fine-tuning's gradients;
* phase R (``objective="dpo"`` only), the reference forward: what the policy forward keeps for backward
  plus the no-grad reference pass's transient (one block's activations and the log-prob head's tile);
  with ``objective="grpo"`` and ``reference_pass`` (beta > 0) the reference pass runs before the policy's
  forward, so phase R holds only its own transient;
* phase G (``objective="grpo"`` only), generation: the KV cache of every completion at full length, the
  prompts' prefill (one block at a time, no gradient) and the sampled token's logits.

Preference tuning (``objective="dpo"``, TRL 1.15 DPOTrainer, PEFT model, ``ref_model=None``): each
example is a chosen and a rejected sequence run as one batch of ``2 * batch`` rows, so every
activation term counts ``2 * batch * seq`` tokens; TRL adds a frozen copy of the adapter named ``ref``
(weights only: no gradient, no optimizer state), or for full fine-tuning a reference copy of the model;
and TRL's own fused log-prob head replaces the stack's loss: tiles of at most 4096 tokens x 32768 vocab
in the compute dtype, never the whole logits tensor. The reference forward runs after the policy
forward, while the policy's activations are alive: phase R.

GRPO (``objective="grpo"``, TRL 1.15 GRPOTrainer, PEFT model): ``batch`` counts prompts; each step samples
``generations`` completions of up to ``completion`` tokens for each, so every activation term counts
``batch * generations`` rows of ``seq + completion`` tokens (``seq`` is the prompt). The policy's
log-probs come from the same fused log-prob head as DPO's. Generation is phase G (TRL generates before
it computes any loss). With ``reference_pass`` (beta > 0) TRL runs the rows once more with the adapter
switched off (no copy of the adapter), also before the loss: phase R. With vLLM (``engine_gb``,
Unsloth's ``fast_inference``) the engine reserves its share of the GPU up front and holds the base
weights, shared with training, and the KV cache: the estimate counts the share beyond the weights
instead of phase G.

DoRA (``dora=True``): the trained weights gain one magnitude per output row of each adapted layer
(``loralab.plan.lora_math``), each block keeps two more d_out-wide outputs per adapted layer for the
magnitude's gradient (the base output in the compute dtype, the LoRA output in the adapter dtype) (``dora_activation_bytes``: PEFT's DoRA forward runs the base linear a second time),
and the row norms ||W + s B A|| need one layer's B A and W + s B A at a time (a static transient). An
estimate read from PEFT's code, not a measurement; PEFT's own comparison measured DoRA ~17% slower.

Activations are counted op by op for a Llama-style block in eager PyTorch with SDPA/flash attention
(no seq^2 term). ``stack`` presets match the code paths: ``"unsloth"`` (Unsloth on a GPU: fused
cross-entropy, checkpoints offloaded to CPU RAM), ``"hf"`` (transformers + PEFT: fp32 adapters that
cast their input, unfused loss), ``"torchtune"`` (pure bf16, chunked loss). Validated in
``tests/test_memory_estimates.py`` against CPU measurements and published GPU numbers.

Long sequences, on the safe side: on a GPU the ``unsloth`` and ``hf`` presets add ``seq_margin`` (20%) of
the terms that grow with the sequence (``long-sequence margin``) for what cannot be counted exactly (the
caching allocator's fragmentation, kernels' workspaces); the ``hf`` stack's unfused loss holds one more
fp32 block per logit there, and with a k-bit base PEFT's ``prepare_model_for_kbit_training`` keeps
embeddings, lm_head and norms (and so the residual stream) in fp32. Checked against Unsloth's published
context lengths and torchtune's peaks in ``tests/test_planner_references.py``; the CPU-measurable part at
the real vocabulary in ``tests/test_long_sequence_probe.py``.

This is one device. ``loralab.plan.devices`` turns it into one of several (DDP, FSDP): terms marked
``sharded`` (parameters, their gradients and optimizer states) are the ones FSDP divides.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from loralab.plan.architectures import Architecture, get_architecture
from loralab.plan.lora_math import target_modules, trainable_params

GB = 1e9
GIB = 2**30
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
# NF4 (QLoRA paper, section 3): 4-bit codes + one fp32 absmax per block of 64 weights = 32/64 = 0.5 bit.
# Double quantization stores those absmax as 8-bit (8/64) plus one fp32 constant per 256 blocks
# (32/(64*256)): 0.127 bit per weight.
NF4_BLOCK = 64
NF4_CONSTANT_BITS = 32 / NF4_BLOCK
NF4_DOUBLE_QUANT_CONSTANT_BITS = 8 / NF4_BLOCK + 32 / (NF4_BLOCK * 256)
# Bytes per logit element (tokens x vocab) the loss holds at its peak:
# unfused  - transformers 5 ForCausalLMLoss: fp32 log-probs kept for backward + the gradient w.r.t. them
#            + the gradient w.r.t. the logits, 3 x 4 B (checked on CPU in tests/test_memory_estimates.py);
# chunked  - torchtune CEWithChunkedOutputLoss (8 chunks): bf16 logits kept (2 B) + one chunk's fp32
#            copy and bf16 gradient at a time ((4 + 2) / 8 B);
# fused    - Unsloth with Cut Cross-Entropy: logits are never materialized, only the hidden states.
LOSS_BYTES = {"unfused": 12.0, "chunked": 2.0 + 6.0 / 8, "fused": 0.0}
# On a CUDA GPU the unfused loss holds one more fp32 block per logit: the caching allocator keeps the freed
# fp32 upcast (and transformers 4.4x's shifted copy, one token shorter) as cached blocks that the gradient's
# blocks of another size cannot reuse. Not measurable on CPU (no caching allocator): counted on the safe side.
UNFUSED_ALLOCATOR_BYTES = 4.0
# The long-sequence margin: what grows with the sequence and cannot be counted exactly on a GPU (the caching
# allocator's fragmentation at multi-GB activations and logits, kernels' workspaces, the gradients in flight
# inside one block's backward) is covered by this share of the sequence-dependent terms. 0.2 keeps the
# planner's longest sequence at or below every published measurement of the Unsloth and transformers
# stacks, and within 20% of it but on one row, where fixed memory, not this margin, makes the difference
# (the 70B on 48 GB: tests/test_planner_references.py, docs/planner.md).
SEQ_MARGIN = 0.2
# TRL 1.15 preference trainers call the model with ``fused_lm_head=True`` (trl.kernels.chunked_logprob):
# the LM head runs on [4096 tokens, 32768 vocab] tiles whatever the stack's loss would do.
TRL_HEAD_TOKEN_TILE = 4096
TRL_HEAD_VOCAB_TILE = 32768
OBJECTIVES = ("sft", "dpo", "grpo")
# Unsloth's from_pretrained(fast_inference=True) reserves this share of the GPU for vLLM (its default
# gpu_memory_utilization, which loralab keeps).
VLLM_SHARE = 0.5

Method = Literal["full", "lora", "qlora"]
Objective = Literal["sft", "dpo", "grpo"]


@dataclass(frozen=True)
class TrainingSetup:
    """What is trained and how; every field changes a term of the estimate."""

    method: Method = "qlora"  # full fine-tuning, LoRA on a 16-bit base, or LoRA on a 4-bit base
    batch: int = 2  # sequences per optimizer micro-step
    seq: int = 2048  # tokens per sequence
    r: int = 16  # LoRA rank
    targets: str | tuple[str, ...] = "all-linear"  # "all-linear", "attention" or module names
    gradient_checkpointing: Literal["none", "standard", "offload"] = "offload"  # offload: Unsloth's mode
    compute_dtype: Literal["bf16", "fp16", "fp32"] = "bf16"  # dtype of activations and 16-bit weights
    trainable_dtype: Literal["bf16", "fp32"] = "fp32"  # PEFT upcasts adapters; full FT keeps fp32 masters
    optimizer: Literal["adamw", "adamw_8bit"] = "adamw"  # AdamW keeps 2 states per trained weight
    base_bits: int | None = None  # None: 4 for qlora, 16 for lora; 8 = LLM.int8 base
    double_quant: bool = True  # bnb_4bit_use_double_quant
    loss: Literal["unfused", "chunked", "fused"] = "fused"  # how the cross-entropy holds the logits
    adapter_casts_input: bool = False  # PEFT casts each adapter's input to the adapter dtype (a copy)
    runtime_overhead_gb: float = 0.8  # CUDA context, kernels, allocator slack (0 on CPU)
    seq_margin: float = 0.0  # share added to the sequence-dependent terms on a GPU (runtime_overhead_gb > 0)
    upcast_unquantized: bool = False  # PEFT's prepare_model_for_kbit_training: non-quantized params in fp32
    objective: Objective = "sft"  # "dpo": chosen + rejected rows, a reference adapter and reference pass
    dora: bool = False  # DoRA: d magnitudes per adapted layer, and its forward keeps two more d-wide outputs
    generations: int = 8  # GRPO: completions sampled per prompt (num_generations); batch counts prompts
    completion: int = 256  # GRPO: tokens generated per completion (max_completion_length), after seq's prompt
    reference_pass: bool = False  # GRPO with beta > 0: the rows once more with the adapter off, no gradient
    engine_gb: float = 0.0  # GRPO with vLLM: GiB the generation engine reserves (VLLM_SHARE of the GPU)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}.")
        if self.objective == "grpo":
            if int(self.generations) < 2:
                raise ValueError(f"generations must be at least 2 (GRPO compares completions of one prompt), "
                                 f"got {self.generations!r}.")
            if int(self.completion) < 1:
                raise ValueError(f"completion must be at least 1 token, got {self.completion!r}.")
        if self.method not in ("full", "lora", "qlora"):
            raise ValueError(f"method must be 'full', 'lora' or 'qlora', got {self.method!r}.")
        for name in ("batch", "seq", "r"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}.")
        if self.gradient_checkpointing not in ("none", "standard", "offload"):
            raise ValueError(
                "gradient_checkpointing must be 'none', 'standard' or 'offload' "
                f"(Unsloth's 'unsloth' mode), got {self.gradient_checkpointing!r}."
            )
        if self.loss not in LOSS_BYTES:
            raise ValueError(f"loss must be one of {sorted(LOSS_BYTES)}, got {self.loss!r}.")
        if not 0 <= float(self.seq_margin) <= 1:
            raise ValueError(f"seq_margin must be between 0 and 1, got {self.seq_margin!r}.")
        if self.base_bits not in (None, 4, 8, 16, 32):
            raise ValueError(f"base_bits must be 4, 8, 16 or 32, got {self.base_bits!r}.")

    @property
    def rows(self) -> int:
        """Sequences per forward pass: DPO runs each example's chosen and rejected answers together, GRPO
        every completion of every prompt."""
        if self.objective == "grpo":
            return self.batch * self.generations
        return 2 * self.batch if self.objective == "dpo" else self.batch

    @property
    def row_len(self) -> int:
        """Tokens per row: GRPO's prompt (seq) and its completion; otherwise seq."""
        return self.seq + self.completion if self.objective == "grpo" else self.seq

    @property
    def tokens(self) -> int:
        return self.rows * self.row_len

    @property
    def on_gpu(self) -> bool:
        """A CUDA runtime and its caching allocator (runtime_overhead_gb > 0); the CPU probes set it to 0."""
        return self.runtime_overhead_gb > 0

    @property
    def upcasts(self) -> bool:
        """PEFT's prepare_model_for_kbit_training ran (a k-bit base on a stack that calls it): embeddings,
        lm_head and norms are fp32, and so is the residual stream that starts at the fp32 embedding."""
        return self.upcast_unquantized and self.method != "full" and self.weight_bits in (4, 8)

    @property
    def weight_bits(self) -> int:
        if self.method == "qlora":
            return 4
        if self.method == "full":
            return 8 * DTYPE_BYTES[self.trainable_dtype]
        return self.base_bits or 8 * DTYPE_BYTES[self.compute_dtype]


STACKS: dict[str, dict] = {
    # Unsloth on a CUDA GPU: its LoRA kernels keep one bf16 input per projection group, the loss is
    # Cut Cross-Entropy (no logits tensor), use_gradient_checkpointing="unsloth" offloads checkpoints.
    "unsloth": {
        "gradient_checkpointing": "offload",
        "loss": "fused",
        "adapter_casts_input": False,
        "seq_margin": SEQ_MARGIN,
    },
    # transformers + PEFT + TRL (and Unsloth's CPU backend): fp32 adapters cast their bf16 input (a copy
    # per adapter), the loss upcasts logits to fp32, and a k-bit base goes through PEFT's
    # prepare_model_for_kbit_training (TRL's SFTTrainer calls it), which casts every other weight to fp32.
    "hf": {
        "gradient_checkpointing": "standard",
        "loss": "unfused",
        "adapter_casts_input": True,
        "seq_margin": SEQ_MARGIN,
        "upcast_unquantized": True,
    },
    # torchtune single-device recipes: everything bf16 (adapters and AdamW states too), chunked CE. Its
    # published figures are the allocator's active memory (no context, no fragmentation): no margin.
    "torchtune": {
        "gradient_checkpointing": "standard",
        "loss": "chunked",
        "trainable_dtype": "bf16",
        "adapter_casts_input": False,
        "runtime_overhead_gb": 0.0,
    },
}


def setup_for(stack: str = "unsloth", **fields) -> TrainingSetup:
    """A TrainingSetup with a stack's defaults, overridden by ``fields``."""
    if stack not in STACKS:
        raise ValueError(f"stack must be one of {sorted(STACKS)}, got {stack!r}.")
    return TrainingSetup(**{**STACKS[stack], **fields})


@dataclass(frozen=True)
class Term:
    name: str
    bytes: float
    how: str
    phase: Literal["static", "A", "B", "AB", "R", "AR", "ABR", "G", "ABG", "ABRG"] = "static"  # "AB": counted in A and B
    sharded: bool = False  # a parameter, its gradient or optimizer state: FSDP divides it across devices

    @property
    def gb(self) -> float:
        return self.bytes / GB


@dataclass(frozen=True)
class MemoryEstimate:
    model: str
    setup: TrainingSetup
    terms: tuple[Term, ...]
    peak_phase: str  # "A" (end of forward: logits), "B" (inside backward), "R" (reference pass), "G" (generation)
    tutorial_gb: float  # the tutorial's params * bits/8 * 1.2
    notes: tuple[str, ...] = field(default_factory=tuple)

    def term(self, name: str) -> float:
        return sum(t.bytes for t in self.terms if t.name == name)

    @property
    def margin(self) -> str:
        """One line: the margin this estimate keeps on top of the counted terms, and why."""
        return margin_line(self.setup)

    @property
    def static_bytes(self) -> float:
        return sum(t.bytes for t in self.terms if t.phase == "static")

    def phase_bytes(self, phase: str) -> float:
        return sum(t.bytes for t in self.terms if t.phase != "static" and phase in t.phase)

    @property
    def phases(self) -> tuple[str, ...]:
        """A and B always; R when the estimate has a reference pass (DPO, GRPO with beta > 0), G when it
        generates (GRPO without vLLM)."""
        dynamic = [t.phase for t in self.terms if t.phase != "static"]
        return ("A", "B") + tuple(p for p in "RG" if any(p in phase for phase in dynamic))

    @property
    def total_bytes(self) -> float:
        return self.static_bytes + max(self.phase_bytes(p) for p in self.phases)

    @property
    def total_gb(self) -> float:
        return self.total_bytes / GB

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    def rows(self) -> list[tuple[str, float, str]]:
        """(term, GB, how) for every term, then the peak; phase A/B terms do not all add up."""

        def label(phase: str) -> str:
            return "" if phase == "static" else " [" + "+".join(phase) + "]"

        out = [(t.name + label(t.phase), t.gb, t.how) for t in self.terms]
        out.append(
            (
                f"peak = static + max({', '.join(self.phases)})",
                self.total_gb,
                f"peak in phase {self.peak_phase}",
            )
        )
        return out

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "method": self.setup.method,
            "total_gb": round(self.total_gb, 3),
            "peak_phase": self.peak_phase,
            "tutorial_rule_gb": round(self.tutorial_gb, 2),
            "margin": self.margin,
            "terms": [
                {"name": t.name, "gb": round(t.gb, 4), "phase": t.phase, "how": t.how} for t in self.terms
            ],
        }


def tutorial_rule_gb(params_billions: float, bits: int) -> float:
    """The tutorial's rough rule: memory to store the base, plus 20% (``gpu_gb_estimate``)."""
    return round(params_billions * bits / 8 * 1.2, 1)


def _as_arch(model: str | Architecture) -> Architecture:
    return model if isinstance(model, Architecture) else get_architecture(model)


def _trained_modules(arch: Architecture, s: TrainingSetup) -> tuple[str, ...]:
    return tuple(arch.linear_shapes()) if s.method == "full" else target_modules(arch, s.targets)


def layer_activation_bytes(arch: Architecture, s: TrainingSetup) -> float:
    """Bytes one block keeps for backward, per token (eager PyTorch, flash/SDPA attention)."""
    c = DTYPE_BYTES[s.compute_dtype]
    t = DTYPE_BYTES[s.trainable_dtype]
    h, q, kv, i = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    total = arch.norms_per_layer * 4 * h  # RMSNorm keeps its input in fp32 (an upcast copy under bf16)
    total += c * (2 * q + 2 * kv) + 4 * arch.heads  # q, k (after RoPE), v, attention output, logsumexp
    total += 3 * c * i  # gate output (SiLU input), SiLU output, up output (the product's operands)
    trained = _trained_modules(arch, s)
    groups = (
        (("q_proj", "k_proj", "v_proj", "qkv_proj"), h),
        (("o_proj",), q),
        (("gate_proj", "up_proj", "gate_up_proj"), h),
        (("down_proj",), i),
    )
    for names, width in groups:  # inputs of the trained linears, kept for their weight gradients
        n = sum(1 for m in names if m in trained)
        if n:
            total += n * t * width if (s.adapter_casts_input and t != c and s.method != "full") else c * width
    if s.method != "full":
        total += len(trained) * max(c, t) * s.r  # x @ A^T, kept for B's gradient
        if s.dora:
            total += dora_activation_bytes(arch, s)
    return float(total)


def dora_activation_bytes(arch: Architecture, s: TrainingSetup) -> float:
    """DoRA's extra bytes per token and block: PEFT's DoRA forward (``peft.tuners.lora.dora``) runs the base
    linear a second time and scales its output and the LoRA output by magnitude / ||W + s B A||; autograd
    keeps both d_out-wide outputs for the magnitude's gradient (the weight norm itself is detached): the base
    output in the compute dtype, the LoRA output in the adapter dtype. An estimate from the code's structure,
    not a measurement: allocator reuse can make it smaller."""
    shapes = arch.linear_shapes()
    width = DTYPE_BYTES[s.compute_dtype] + DTYPE_BYTES[s.trainable_dtype]
    return float(sum(width * shapes[m][1] for m in _trained_modules(arch, s)))


def kv_cache_bytes_per_token(arch: Architecture, value_bytes: int) -> int:
    """Keys and values of one token in every block: layers x 2 x kv_dim x bytes per value."""
    return arch.layers * 2 * arch.kv_dim * value_bytes


GENERATION_SHARE = 0.5  # of the free memory, for one batch of greedy generation (the rest: allocator slack)


def generation_batch_size(arch: Architecture, free_bytes: int, prompt_tokens: int, new_tokens: int,
                          value_bytes: int, most: int) -> int:
    """The most prompts to generate for at once so that, per row, the KV cache at full length, the prompt's
    prefill through one block (no grad) and the sampled position's logits stay within ``GENERATION_SHARE``
    of ``free_bytes``; between 1 and ``most``. An estimate on the safe side, not a measurement."""
    cache = (prompt_tokens + new_tokens) * kv_cache_bytes_per_token(arch, value_bytes)
    prefill = prompt_tokens * (3 * arch.hidden + 2 * arch.intermediate + arch.q_dim + 2 * arch.kv_dim) * value_bytes
    logits = arch.vocab * (value_bytes + 2 * 4)
    return max(1, min(most, int(free_bytes * GENERATION_SHARE // (cache + prefill + logits))))


def _generation_term(arch: Architecture, s: TrainingSetup, per_layer: float, terms: list[Term]) -> Term:
    """GRPO's sampling. Plain generation (``model.generate``, phase G): the KV cache of every row at full
    length, the prompts' no-grad prefill (one block's activations at a time) and the sampled position's
    logits (fp32, with their softmax). vLLM: the engine's reservation beyond the base weights it shares."""
    c = DTYPE_BYTES[s.compute_dtype]
    if s.engine_gb:
        shared = sum(t.bytes for t in terms if t.name.startswith(("base linear weights", "NF4", "embeddings")))
        return Term(
            "generation engine (vLLM)",
            max(0.0, s.engine_gb * GIB - shared),
            f"{s.engine_gb:.1f} GiB reserved by vLLM (Unsloth's fast_inference, gpu_memory_utilization "
            f"{VLLM_SHARE:g}), less the base weights it shares with training: its KV cache and buffers",
        )
    cache = s.tokens * kv_cache_bytes_per_token(arch, c)
    prefill = s.rows * s.seq * per_layer
    sampling = s.rows * arch.vocab * (c + 2 * 4)
    return Term(
        "generation (KV cache)",
        cache + prefill + sampling,
        f"{s.rows} rows x {s.row_len} tokens x {arch.layers} blocks x 2 x {arch.kv_dim} x {c} B of keys and "
        f"values, + the prompts' prefill (one block) and {s.rows} x {arch.vocab} sampled logits",
        "G",
    )


NOT_SEQUENCE_TERMS = ("gradients", "generation engine (vLLM)")  # phase terms that do not grow with tokens


def margin_line(s: TrainingSetup) -> str:
    """The one line that says what margin the estimate keeps and why."""
    if not (s.seq_margin and s.on_gpu):
        return "margin kept: none (no CUDA allocator here, or a stack whose figures are active memory)"
    return (
        f"margin kept: +{s.seq_margin:.0%} on what grows with seq (allocator fragmentation, workspaces: "
        "not countable exactly)"
    )


def _margin_term(s: TrainingSetup, terms: list[Term]) -> Term | None:
    """``seq_margin`` of the largest phase's sequence-dependent bytes, added to every phase (the safe side:
    at least the margin of the phase that peaks). Only on a GPU: the CPU probes have no caching allocator."""
    if not (s.seq_margin and s.on_gpu):
        return None
    dynamic = [t for t in terms if t.phase != "static" and t.name not in NOT_SEQUENCE_TERMS]
    phases = ("A", "B") + tuple(p for p in "RG" if any(p in t.phase for t in terms if t.phase != "static"))
    grows = max(sum(t.bytes for t in dynamic if p in t.phase) for p in phases)
    return Term(
        "long-sequence margin",
        s.seq_margin * grows,
        f"+{s.seq_margin:.0%} of the sequence-dependent terms: allocator fragmentation, kernel workspaces "
        "(not countable exactly; the safe side)",
        "".join(phases),  # type: ignore[arg-type]
    )


def estimate_memory(
    model: str | Architecture, setup: TrainingSetup | None = None, **fields
) -> MemoryEstimate:
    """Peak training memory for ``model`` under ``setup`` (or TrainingSetup(**fields))."""
    arch = _as_arch(model)
    s = replace(setup, **fields) if setup is not None else TrainingSetup(**fields)
    c = DTYPE_BYTES[s.compute_dtype]
    t = DTYPE_BYTES[s.trainable_dtype]
    terms: list[Term] = []
    notes: list[str] = []
    n_linear, n_other = arch.linear_params, arch.embedding_params + arch.small_params
    # --- weights ---
    if s.method == "full":
        terms.append(
            Term(
                "weights (trained)",
                arch.param_count() * t,
                f"{arch.param_count() / 1e9:.2f}B params x {t} B ({s.trainable_dtype})",
                sharded=True,
            )
        )
        n_train = arch.param_count()
        if s.objective == "dpo" or (s.objective == "grpo" and s.reference_pass):
            terms.append(
                Term(
                    "reference model (frozen copy)",
                    arch.param_count() * c,
                    f"TRL's ref_model: {arch.param_count() / 1e9:.2f}B params x {c} B ({s.compute_dtype})",
                    sharded=True,
                )
            )
    else:
        bits = s.weight_bits
        terms.append(
            Term(
                f"base linear weights ({bits}-bit)",
                n_linear * bits / 8,
                f"{n_linear / 1e9:.2f}B block-linear params x {bits}/8 B",
                sharded=True,
            )
        )
        if bits == 4:
            const_bits = NF4_DOUBLE_QUANT_CONSTANT_BITS if s.double_quant else NF4_CONSTANT_BITS
            terms.append(
                Term(
                    "NF4 quantization constants",
                    n_linear * const_bits / 8,
                    f"{const_bits:.3f} bit/param ({'double quant' if s.double_quant else 'fp32 absmax per 64'})",
                )
            )
            terms.append(
                Term(
                    "dequantized weight buffer",
                    c * max(a * b for a, b in arch.linear_shapes().values()),
                    "one weight dequantized to the compute dtype at a time",
                )
            )
        elif bits == 8:
            rows = arch.layers * sum(o for _, o in arch.linear_shapes().values())
            terms.append(Term("int8 row scales", rows * 4, "one fp32 scale per output row"))
        other_b = 4 if s.upcasts else c
        terms.append(
            Term(
                "embeddings + lm_head + norms",
                n_other * other_b,
                f"{n_other / 1e9:.3f}B params in fp32 (PEFT's prepare_model_for_kbit_training upcasts them)"
                if s.upcasts and other_b != c
                else f"{n_other / 1e9:.3f}B params kept in {s.compute_dtype} (not quantized)",
                sharded=True,
            )
        )
        n_train = trainable_params(arch, s.r, s.targets, dora=s.dora)
        terms.append(
            Term(
                "DoRA weights (LoRA + magnitudes)" if s.dora else "LoRA weights",
                n_train * t,
                f"{n_train / 1e6:.1f}M params x {t} B ({s.trainable_dtype})",
                sharded=True,
            )
        )
        if s.dora:
            biggest = max(a * b for a, b in arch.linear_shapes().values())
            terms.append(
                Term(
                    "DoRA weight-norm buffer",
                    2 * t * biggest,
                    "||W + s B A|| per row: B A and W + s B A of one layer at a time, in the adapter dtype",
                )
            )
        if s.objective == "dpo":
            terms.append(
                Term(
                    "reference adapter (ref)",
                    n_train * t,
                    "TRL's frozen copy of the adapter: weights only, no gradient or optimizer state",
                    sharded=True,
                )
            )
    state_bytes = 2.0 if s.optimizer == "adamw_8bit" else 2.0 * t
    terms.append(
        Term(
            "optimizer states",
            n_train * state_bytes,
            f"AdamW: 2 states x {state_bytes / 2:g} B per trained param",
            sharded=True,
        )
    )
    grad_phase = "B" if s.method == "full" else "static"
    terms.append(
        Term(
            "gradients",
            n_train * t,
            f"one {s.trainable_dtype} gradient per trained param",
            grad_phase,
            sharded=True,
        )
    )
    # --- activations ---
    per_layer = layer_activation_bytes(arch, s)
    res = 4 if s.upcasts else c  # the residual stream: fp32 from an upcast embedding on (bf16 + fp32 = fp32)
    tokens = s.tokens
    dpo, grpo = s.objective == "dpo", s.objective == "grpo"
    rows_how = (
        f"{s.rows} rows (chosen + rejected) x {s.seq}"
        if dpo
        else f"{s.rows} completions ({s.batch} prompts x {s.generations}) x ({s.seq} + {s.completion})"
        if grpo
        else str(tokens)
    )
    if s.gradient_checkpointing == "none":
        terms.append(
            Term(
                "activations (all blocks)",
                tokens * arch.layers * per_layer,
                f"{rows_how} tokens x {arch.layers} blocks x {per_layer / 1e3:.1f} kB",
                "AR" if dpo else "A",
            )
        )
    else:
        ckpt = tokens * arch.layers * res * arch.hidden
        if s.gradient_checkpointing == "offload":
            notes.append(
                f"{ckpt / GB:.2f} GB of checkpoints are offloaded to CPU RAM, not counted on the GPU."
            )
            ckpt = tokens * res * arch.hidden  # the one in flight
        terms.append(
            Term(
                "checkpoints (block inputs)",
                ckpt,
                f"{rows_how} tokens x {res * arch.hidden} B per block"
                + (
                    " (offloaded: one on GPU)"
                    if s.gradient_checkpointing == "offload"
                    else f" x {arch.layers}"
                ),
                "ABR" if dpo else "AB",
            )
        )
        terms.append(
            Term(
                "recomputed block",
                tokens * per_layer,
                f"one block's activations rebuilt in backward: {per_layer / 1e3:.1f} kB/token",
                "B",
            )
        )
    terms.append(
        Term(
            "final norm",
            tokens * (4 + res) * arch.hidden,
            "fp32 input + output of the last RMSNorm",
            "AR" if dpo else "A",
        )
    )
    loss_b = LOSS_BYTES[s.loss] + (UNFUSED_ALLOCATOR_BYTES if s.loss == "unfused" and s.on_gpu else 0.0)
    # TRL's fused log-prob head: one [4096, 32768] tile of logits in the compute dtype at a time, the
    # hidden states it reads (a masked copy, kept for backward) and, in backward, their fp32 gradient.
    tile = min(tokens, TRL_HEAD_TOKEN_TILE) * min(arch.vocab, TRL_HEAD_VOCAB_TILE) * c
    head_in = tokens * c * arch.hidden
    if dpo or grpo:
        terms.append(
            Term(
                "log-prob head (TRL)",
                tile + head_in + tokens * 4 * arch.hidden,
                f"{tile / 1e6:.0f} MB logits tile + hidden-state copy + its fp32 gradient "
                "(TRL's fused head; the stack's loss is not used)",
                "A",
            )
        )
        if dpo or s.reference_pass:
            terms.append(
                Term(
                    "reference forward",
                    tokens * per_layer + tile + head_in,
                    "no-grad pass under the ref adapter: one block's activations + the head's tile and input"
                    if dpo
                    else "no-grad pass with the adapter off (beta > 0), before the policy's forward: one "
                    "block's activations + the head's tile and input",
                    "R",
                )
            )
        if grpo:
            terms.append(_generation_term(arch, s, per_layer, terms))
    else:
        terms.append(
            Term(
                "logits + loss",
                tokens * arch.vocab * loss_b,
                f"{tokens} tokens x {arch.vocab} vocab x {loss_b:g} B ({s.loss} cross-entropy"
                + (
                    f", {UNFUSED_ALLOCATOR_BYTES:g} B of it a cached fp32 block the allocator cannot reuse)"
                    if loss_b > LOSS_BYTES[s.loss]
                    else ")"
                ),
                "A",
            )
            if loss_b
            else Term(
                "logits + loss",
                tokens * c * arch.hidden,
                "fused cross-entropy: no logits tensor; the hidden states' gradient, computed in forward "
                "(unsloth_zoo's fused loss sizes its chunks to half the free memory)",
                "A",
            )
        )
    margin = _margin_term(s, terms)
    if margin is not None:
        terms.append(margin)
    if s.runtime_overhead_gb:
        terms.append(
            Term("runtime overhead", s.runtime_overhead_gb * GB, "CUDA context, kernels, allocator slack")
        )
    est = MemoryEstimate(
        model=arch.name,
        setup=s,
        terms=tuple(terms),
        peak_phase="A",
        tutorial_gb=tutorial_rule_gb(arch.param_count() / 1e9, 4 if s.method == "qlora" else 16),
        notes=tuple(notes),
    )
    phase = max(est.phases, key=est.phase_bytes)  # the first of equal phases: A before B before R
    return replace(est, peak_phase=phase)
