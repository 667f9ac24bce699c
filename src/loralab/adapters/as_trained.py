"""The model as trained (an adapter on the base it was trained against), and that base as a 16-bit folder.

    from loralab.adapters.as_trained import load_as_trained, save_dequantized_base
    model, tokenizer = load_as_trained("runs/a/adapter")      # QLoRA: on its 4-bit NF4 base, fp32 compute
    save_dequantized_base("runs/a/adapter", "runs/a/base-dequantized")   # what a GGUF LoRA goes with

Exports are compared with ``load_as_trained`` (``loralab.adapters.parity``). A QLoRA adapter was
trained against the *dequantized NF4* weights; served as a separate adapter (llama.cpp's ``--lora``)
it needs those weights as its base, not the original 16-bit ones, for the same reason a merge does
(``loralab.adapters.merge``). ``save_dequantized_base`` writes them as a plain 16-bit Hugging Face
folder (the base's own dtype), with its tokenizer, for llama.cpp's converters.
"""

from __future__ import annotations

import gc
from pathlib import Path


def _base_folder(base_model: str) -> Path:
    from loralab.adapters.manifest import local_model_folder

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

    from loralab.adapters.merge import _load_4bit_base
    from loralab.adapters.verified_loading import check_adapter_base

    check = check_adapter_base(Path(adapter_dir), base_model, allow_base_mismatch=allow_base_mismatch)
    folder = _base_folder(check.base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if (check.manifest or {}).get("base_quantization", "16-bit").startswith("nf4"):
        base = _load_4bit_base(check.base_model, check.manifest)
    else:
        base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True).eval()
    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False).eval(), tokenizer


def save_dequantized_base(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None) -> Path:
    """Write the base an adapter was trained against as a 16-bit folder: for a QLoRA adapter its NF4 weights
    dequantized (bit-exact, see ``loralab.adapters.merge.dequantize_into``), else the base itself."""
    import json

    import torch
    import unsloth  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.adapters.merge import _load_4bit_base, dequantize_into
    from loralab.adapters.verified_loading import check_adapter_base
    from loralab.atomic_folder import folder_written_aside

    check = check_adapter_base(Path(adapter_dir), base_model)
    folder = _base_folder(check.base_model)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True).eval()
    if (check.manifest or {}).get("base_quantization", "16-bit").startswith("nf4"):
        quantized = _load_4bit_base(check.base_model, check.manifest)
        if dequantize_into(quantized, base) == 0:
            raise RuntimeError(f"the 4-bit load of {check.base_model} has no Linear4bit layer to dequantize.")
        del quantized
        gc.collect()
    on_disk = json.loads((folder / "config.json").read_text())
    dtype = getattr(torch, str(on_disk.get("dtype") or on_disk.get("torch_dtype") or "bfloat16"))
    dtype = dtype if dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    out_dir = Path(out_dir)
    with folder_written_aside(out_dir) as staging:
        base.to(dtype).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return out_dir
