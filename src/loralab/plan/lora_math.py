"""The LoRA parameter arithmetic: r*(d+k) per matrix, and the exact trainable count of a whole model.

    from loralab.plan.lora_math import lora_params, trainable_params
    lora_params(4096, 4096, 16)                                  # 131072  (A is r x k, B is d x r)
    trainable_params("llama-3.1-8b", r=16, targets="all-linear") # 41943040, what PEFT reports
    trainable_params("llama-3.1-8b", r=16, dora=True)             # + d_out per adapted layer: 43319296

DoRA (``use_dora``) trains one magnitude per output row of every adapted layer on top of A and B:
d more weights per d x k layer (PEFT's ``lora_magnitude_vector``). rsLoRA, PiSSA/OLoRA init and LoRA+
change no count: they change the scale, the start and the learning rates.

``targets`` is ``"all-linear"`` (what PEFT's ``target_modules="all-linear"`` adapts: every linear layer but
the output layer, here every block's attention and MLP projections), ``"attention"`` (q, k, v, o only), or an
explicit list of module names such as ``["q_proj", "v_proj"]``.
"""

from __future__ import annotations

from collections.abc import Sequence

from loralab.plan.architectures import Architecture, get_architecture


def lora_params(d: int, k: int, r: int) -> int:
    """Trainable parameters LoRA adds to one d x k weight: A (r x k) plus B (d x r) = r * (d + k)."""
    for label, value in (("d", d), ("k", k), ("r", r)):
        if int(value) != value or value < 1:
            raise ValueError(f"{label} must be a positive whole number, got {value!r}.")
    return int(r) * (int(d) + int(k))


def dora_params(d: int, k: int, r: int) -> int:
    """Trainable parameters DoRA adds to one d x k weight: LoRA's r * (d + k) plus one magnitude per output row."""
    return lora_params(d, k, r) + int(d)


def full_params(d: int, k: int) -> int:
    """Parameters full fine-tuning trains for the same matrix: d * k."""
    return int(d) * int(k)


def _as_arch(model: str | Architecture) -> Architecture:
    return model if isinstance(model, Architecture) else get_architecture(model)


def target_modules(model: str | Architecture, targets: str | Sequence[str] = "all-linear") -> tuple[str, ...]:
    """Resolve a target set to the module names of this architecture."""
    arch = _as_arch(model)
    shapes = arch.linear_shapes()
    if isinstance(targets, str):
        if targets == "all-linear":
            return tuple(shapes)
        if targets == "attention":
            return arch.attention_modules()
        raise ValueError(
            f"targets must be 'all-linear', 'attention' or a list of module names, got {targets!r}."
        )
    unknown = [t for t in targets if t not in shapes]
    if unknown:
        raise ValueError(
            f"{arch.name} has no linear layer named {unknown}; its block linears are {list(shapes)}."
        )
    return tuple(targets)


def trainable_params(model: str | Architecture, r: int, targets: str | Sequence[str] = "all-linear",
                     dora: bool = False) -> int:
    """Exact LoRA (or DoRA) trainable parameter count for a whole model (equals PEFT's get_nb_trainable_parameters)."""
    arch = _as_arch(model)
    shapes = arch.linear_shapes()
    count = dora_params if dora else lora_params
    per_layer = sum(count(shapes[m][1], shapes[m][0], r) for m in target_modules(arch, targets))
    return arch.layers * per_layer


def alpha_scale(alpha: float, r: int, rslora: bool = False) -> float:
    """The factor PEFT multiplies the adapter output by: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    if r < 1:
        raise ValueError(f"r must be at least 1, got {r}.")
    return float(alpha) / (float(r) ** 0.5 if rslora else float(r))
