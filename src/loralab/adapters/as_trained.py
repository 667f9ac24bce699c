"""The model as trained (an adapter on the base it was trained against), and that base as a 16-bit folder.

    from loralab.adapters.as_trained import load_as_trained, save_dequantized_base
    model, tokenizer = load_as_trained("runs/a/adapter")      # QLoRA: on its 4-bit NF4 base, fp32 compute
    save_dequantized_base("runs/a/adapter", "runs/a/base-dequantized")   # what a GGUF LoRA goes with

Exports are compared with ``load_as_trained`` (``loralab.export.parity``). A QLoRA adapter was
trained against the *dequantized NF4* weights; served as a separate adapter (llama.cpp's ``--lora``)
it needs those weights as its base, not the original 16-bit ones, for the same reason a merge does
(``loralab.export.merge``). ``save_dequantized_base`` writes them as a plain 16-bit Hugging Face
folder (the base's own dtype), with its tokenizer, for llama.cpp's converters.

A pre-quantized base (a bitsandbytes 4-bit folder such as Unsloth's ``*-bnb-4bit``) has no 16-bit weights:
its own NF4 weights are what the adapter was trained against, whatever the manifest says. It loads "as trained"
in 4-bit, and ``save_dequantized_base`` dequantizes it layer by layer straight into the saved 16-bit dtype
(``loralab.model.prequantized``), so the peak is the 16-bit model.
"""

from __future__ import annotations

import gc
from pathlib import Path


def load_4bit_base(base_model: str, max_seq_length: int | None):
    """The base in 4-bit NF4 as training loaded it (Unsloth), computing in float32; AVX512 repacking off."""
    import torch

    from loralab.model.loading import load_model
    from loralab.params.run_config import validate_params

    cfg = validate_params({"model_name": base_model, "load_in_4bit": True,
                           "max_seq_length": max_seq_length or 2048,
                           "use_gradient_checkpointing": False}, source="merge_adapter")
    model, _ = load_model(cfg, dtype=torch.float32)
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False  # a repacked weight no longer dequantizes (DESIGN.md)
        if getattr(module, "compute_dtype", None) not in (None, torch.float32):
            module.compute_dtype = torch.float32  # a bnb-4bit folder's config says bf16; the weights are the same
    return model.eval()


def dequantize_into(quantized, model) -> int:
    """Write every bitsandbytes ``Linear4bit`` weight of ``quantized``, dequantized, into ``model``'s Linear of
    the same name (float32 copy of the values the 4-bit layer computes with); returns how many."""
    import bitsandbytes as bnb
    import torch

    from loralab.model.prequantized import dequantized_weight

    count = 0
    with torch.no_grad():
        for name, module in quantized.named_modules():
            if not isinstance(module, bnb.nn.Linear4bit):
                continue
            target = model.get_submodule(name)
            shape = tuple(module.weight.quant_state.shape)
            if isinstance(target, bnb.nn.Linear4bit) or tuple(target.weight.shape) != shape:
                raise ValueError(f"{name}: the 4-bit base has shape {shape}, the 16-bit base "
                                 f"{tuple(target.weight.shape)}: not the same model (a 4-bit one?).")
            target.weight.data.copy_(dequantized_weight(name, module, target.weight.dtype))
            count += 1
    return count


def trained_on_4bit(check, folder: Path) -> bool:
    """True when the adapter's base is 4-bit NF4: its manifest says so, or the folder is a pre-quantized bnb-4bit
    one (which holds no other weights); ValueError for a folder quantized another way."""
    from loralab.model.prequantized import prequantized_4bit

    return prequantized_4bit(folder) or check.load_in_4bit


def _base_folder(base_model: str) -> Path:
    from loralab.model.fingerprints import local_model_folder

    folder = local_model_folder(base_model)
    if folder is None:
        raise ValueError(f"the base {base_model} is not available locally; download it first.")
    return folder


def load_as_trained(adapter_dir: str | Path, base_model: str | None = None, allow_base_mismatch: bool = False):
    """``(model, tokenizer)``: the adapter on its own base (4-bit NF4 when its manifest says so), fp32, eval mode."""
    import torch
    import unsloth  # noqa: F401
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.adapters.verified_loading import check_adapter_base

    check = check_adapter_base(Path(adapter_dir), base_model, allow_base_mismatch=allow_base_mismatch)
    folder = _base_folder(check.base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if trained_on_4bit(check, folder):
        base = load_4bit_base(check.base_model, check.max_seq_length)
    else:
        base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True).eval()
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False).eval(), tokenizer


def save_dequantized_base(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Write the base an adapter was trained against as a 16-bit folder: for a QLoRA adapter its NF4 weights
    dequantized (bit-exact, see ``dequantize_into`` below; a pre-quantized folder's own, layer by layer), else the
    base itself."""
    import torch
    import unsloth  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.adapters.verified_loading import check_adapter_base
    from loralab.atomic_folder import folder_written_aside
    from loralab.model.prequantized import load_dequantized, prequantized_4bit

    check = check_adapter_base(Path(adapter_dir), base_model)
    folder = _base_folder(check.base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    dtype = saved_16bit_dtype(folder)
    if prequantized_4bit(folder):  # float32 dequantization cast once, layer by layer: no float32 copy of the model
        base, _ = load_dequantized(folder, dtype)
    else:
        base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True).eval()
        if check.load_in_4bit:
            quantized = load_4bit_base(check.base_model, check.max_seq_length)
            if dequantize_into(quantized, base) == 0:
                raise RuntimeError(f"the 4-bit load of {check.base_model} has no Linear4bit layer to dequantize.")
            del quantized
            gc.collect()
    out_dir = Path(out_dir)
    with folder_written_aside(out_dir) as staging:
        base.to(dtype).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return out_dir


def saved_16bit_dtype(folder: Path):
    """The dtype a 16-bit folder of this base is saved in: its config's own when 16-bit, else bfloat16."""
    import json

    import torch

    on_disk = json.loads((folder / "config.json").read_text())
    dtype = getattr(torch, str(on_disk.get("dtype") or on_disk.get("torch_dtype") or "bfloat16"), None)
    return dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
