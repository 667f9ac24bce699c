"""A pre-quantized bitsandbytes 4-bit base (Unsloth's ``*-bnb-4bit`` folders) as a float model with its own NF4 weights.

    from loralab.model.prequantized import prequantized_4bit, load_dequantized
    prequantized_4bit(folder)                          # True for a bnb-4bit folder; ValueError for other quantizations
    model, layers = load_dequantized(folder, torch.float32)   # its Linear4bit weights dequantized, one layer at a time

Such a folder holds no 16-bit weights: its config.json has ``quantization_config`` (``quant_method:
bitsandbytes``, ``load_in_4bit: true``) and ``from_pretrained`` gives bitsandbytes ``Linear4bit`` layers holding
packed uint8 codes. An adapter trained on it was trained against those NF4 weights dequantized, which is what a
merge, a GGUF file or a GGUF LoRA's base must hold. ``load_dequantized`` loads the folder in 4-bit and swaps
each ``Linear4bit`` for a ``torch.nn.Linear`` in place, so the peak is the float model plus one layer (never a
float copy next to a float copy).

Each weight is dequantized straight into float32 and then cast (``dequantized_weight``): bitsandbytes' CPU
forward of a ``Linear4bit`` dequantizes into its input's dtype, so at float32 compute that is bit-exact with the
4-bit layer. transformers' ``model.dequantize()`` dequantizes into the dtype recorded in the quant state (bf16 in
Unsloth's folders) and casts after: on the tiny random model one layer then differed from the 4-bit layer's
float32 output by 9e-3.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path


def quantization_config(folder: str | Path) -> dict | None:
    """The ``quantization_config`` of ``folder``'s config.json (None: not quantized, or no config.json)."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        return None
    return json.loads(config_file.read_text()).get("quantization_config") or None


def prequantized_4bit(folder: str | Path) -> bool:
    """True when ``folder`` holds a bitsandbytes 4-bit model; ValueError for any other quantization (not mergeable)."""
    config = quantization_config(folder)
    if config is None:
        return False
    method = config.get("quant_method", "?")
    if method == "bitsandbytes" and config.get("load_in_4bit"):
        return True
    what = f"{method} 8-bit" if method == "bitsandbytes" else method
    raise ValueError(f"{folder} is quantized ({what}): loralab merges and exports from a 16-bit base or a "
                     "bitsandbytes 4-bit one (Unsloth's *-bnb-4bit); use the 16-bit base the adapter was trained on.")


def dequantized_weight(name: str, module, dtype):
    """The float32 weight a bitsandbytes ``Linear4bit`` computes with at float32, cast to ``dtype``."""
    import bitsandbytes.functional as bnb_functional
    import torch

    state = module.weight.quant_state
    if getattr(state, "packing_format_for_cpu", False):
        raise RuntimeError(f"{name}: bitsandbytes repacked this 4-bit weight for its AVX512-BF16 kernel "
                           "(an eval forward with support_avx512bf16_for_cpu on); dequantize before any forward.")
    if state.dtype != torch.float32:
        state = copy.copy(state)  # the layer's own state keeps its dtype
        state.dtype = torch.float32
    return bnb_functional.dequantize_4bit(module.weight.data, state).to(dtype)


def dequantize_in_place(model, dtype) -> int:
    """Replace every bitsandbytes ``Linear4bit`` of ``model`` with a ``torch.nn.Linear`` holding its weight
    dequantized (``dequantized_weight``) in ``dtype``, one layer at a time; the model then saves as a plain
    float folder (no quantization config). Returns how many layers."""
    import bitsandbytes as bnb
    import torch

    names = [name for name, module in model.named_modules() if isinstance(module, bnb.nn.Linear4bit)]
    with torch.no_grad():
        for name in names:
            module = model.get_submodule(name)
            linear = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None,
                                     device="meta")
            linear.weight = torch.nn.Parameter(dequantized_weight(name, module, dtype), requires_grad=False)
            if module.bias is not None:
                linear.bias = torch.nn.Parameter(module.bias.data.to(dtype), requires_grad=False)
            model.set_submodule(name, linear)
            del module  # its packed codes go with it: the peak is the float model plus one layer
    _drop_4bit_load_conversions(model)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # transformers' own: config, quantizer and flags
    elif getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    for flag in ("is_loaded_in_4bit", "is_quantized"):
        if getattr(model, flag, False):
            setattr(model, flag, False)
    return len(names)


def _drop_4bit_load_conversions(model) -> None:
    """Forget the bnb-4bit deserialization transformers recorded at load time: ``save_pretrained`` reverts every
    recorded conversion, and that one has no reverse (NotImplementedError), while the weights are plain now."""
    conversions = getattr(model, "_weight_conversions", None)
    if not conversions:
        return
    from transformers.integrations.bitsandbytes import Bnb4bitDeserialize

    model._weight_conversions = [conversion for conversion in conversions
                                 if not any(isinstance(op, Bnb4bitDeserialize)
                                            for op in getattr(conversion, "operations", []))]


def load_dequantized(folder: str | Path, dtype):
    """``(model, layers)``: the bnb-4bit ``folder`` loaded with transformers, every ``Linear4bit`` dequantized in
    place into ``dtype`` (the other weights load in ``dtype`` too), eval mode. ValueError if it holds none."""
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True)
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False  # a repacked weight no longer dequantizes (DESIGN.md)
    layers = dequantize_in_place(model, dtype)
    if layers == 0:
        raise ValueError(f"{folder}: its config says bitsandbytes 4-bit, but it loaded with no Linear4bit layer "
                         "(is bitsandbytes installed?).")
    return model.eval(), layers
