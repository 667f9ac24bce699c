"""Saving a trained adapter (standard PEFT layout) and checking that it reloads exactly.

    from loralab.adapters.save import save_adapter, save_reference_logits
    save_adapter(model, tokenizer, run_dir / "adapter")         # adapter_config.json + safetensors
    save_reference_logits(model, tokenizer, run_dir / "reference_logits.safetensors")

The folder is written aside and renamed into place, so an interrupted save never leaves half an
adapter. The reference logits let anyone reload base + adapter later and compare.

An adapter trained on a 4-bit base says so in its PEFT-side files, for tools other than loralab: the
model card ``README.md`` that PEFT writes gets ``4-bit``/``bitsandbytes``/``qlora`` tags and, under
"## Training procedure", PEFT's own line "The following `bitsandbytes` quantization config was used
during training:" with the config (PEFT 0.21.2 means to write it but never does: it looks for
``quantization_config`` on a dict) and a paragraph on what a 16-bit base or merge costs::

    from loralab.adapters.save import base_quantization_config, note_4bit_base
    note_4bit_base(adapter_dir, base_quantization_config(model), base_name)   # save_adapter does this

``adapter_config.json`` itself stays as PEFT wrote it: ``LoraConfig`` has no field for the base's
quantization, and an unknown key makes ``PeftModel.from_pretrained`` warn "Unexpected keyword arguments
... upgrade PEFT" (``PeftConfig.from_peft_type``), a misleading message, and PEFT drops the key on the
next save. loralab's own record is ``base_quantization`` in ``loralab_manifest.json``.
"""

from __future__ import annotations

import shutil
from enum import Enum
from pathlib import Path
from typing import Any

from loralab.atomic_folder import folder_written_aside

PROBE_MESSAGES = [{"role": "user", "content": "What is the capital of Peru?"}]
PEFT_QUANTIZATION_LINE = "The following `bitsandbytes` quantization config was used during training:"
CARD_TAGS = ("4-bit", "bitsandbytes", "qlora")
_CARD_KEYS = ("quant_method", "load_in_4bit", "bnb_4bit_quant_type", "bnb_4bit_use_double_quant",
              "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage")
FOUR_BIT_PARAGRAPH = (
    "**Trained on a 4-bit (NF4) base.** This adapter was trained against the *dequantized NF4 weights* of "
    "`{base}` (bitsandbytes 4-bit, blocksize 64, config above), not its original 16-bit weights. To get the "
    "model that was trained, load the base in 4-bit with that config and apply the adapter on top. On the "
    "original 16-bit weights (`PeftModel.from_pretrained` on a 16-bit base, a 16-bit merge, a GGUF converted "
    "from one) it is a different model: outputs differ by the NF4 quantization error (on loralab's embedded "
    "task, the adapter of loralab's `make run` (params/01_qlora_finetune/default.yaml: 20 steps at 1e-3) "
    "answered 20/20 held-out questions in the trained JSON shape on its NF4 "
    "base and 18/20 on the 16-bit base). For a standalone model, merge into the dequantized NF4 weights: "
    "`loralab.export.merge.merge_adapter(adapter_dir, out_dir)` does that by default and checks parity.")


def base_quantization_config(model) -> dict[str, Any] | None:
    """The bitsandbytes 4-bit config the model's base was loaded with (None: a 16-bit base)."""
    config = getattr(model, "config", None)
    quantization = getattr(config, "quantization_config", None)
    if quantization is None:
        return None
    values = quantization.to_dict() if hasattr(quantization, "to_dict") else dict(quantization)
    if not values.get("load_in_4bit"):
        return None
    return {key: values[key].value if isinstance(values[key], Enum) else values[key]
            for key in _CARD_KEYS if key in values}


def note_4bit_base(adapter_dir: str | Path, quantization: dict[str, Any], base_name: str) -> Path:
    """Add the 4-bit tags, PEFT's quantization line with ``quantization`` and the 4-bit paragraph to README.md."""
    from huggingface_hub import ModelCard, ModelCardData

    path = Path(adapter_dir) / "README.md"
    card = ModelCard.load(path) if path.is_file() else ModelCard.from_template(ModelCardData())
    card.data["tags"] = sorted(set(card.data.get("tags") or []) | set(CARD_TAGS))
    lines = card.text.splitlines()
    if PEFT_QUANTIZATION_LINE not in lines:
        block = ["## Training procedure", "", PEFT_QUANTIZATION_LINE,
                 *[f"- {key}: {value}" for key, value in quantization.items()], "",
                 FOUR_BIT_PARAGRAPH.format(base=base_name), ""]
        at = lines.index("### Framework versions") if "### Framework versions" in lines else len(lines)
        lines[at:at] = block
    card.text = "\n".join(lines)
    card.save(path)
    return path


def initial_adapter_folder(model, folder: Path) -> Path | None:
    """Write the PiSSA/OLoRA adapter as initialised (kept by ``attach_lora``) to ``folder`` for PEFT's
    conversion, with ``init_lora_weights: true`` as PEFT asks; None for any other adapter."""
    import copy

    from safetensors.torch import save_file

    from loralab.model.loading import INITIAL_ADAPTER_ATTR

    state = getattr(model, INITIAL_ADAPTER_ATTR, None)
    if not state:
        return None
    config = copy.deepcopy(model.peft_config["default"])
    config.init_lora_weights = True  # else PEFT would subtract the principal part from the base again
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(folder / "adapter_model.safetensors"))
    return folder


def as_plain_lora(model, scratch: str | Path) -> dict[str, str]:
    """``save_pretrained``'s arguments that save a PiSSA/OLoRA adapter as plain LoRA for the original base:
    the adapter as initialised, written under ``scratch``; ``{}`` for any other adapter.

        model.save_pretrained(run_dir / "adapter", **as_plain_lora(model, run_dir / "initial_adapter"))
    """
    initial = initial_adapter_folder(model, Path(scratch))
    return {"path_initial_model_for_weight_conversion": str(initial)} if initial else {}


def save_adapter(model, tokenizer, path: str | Path) -> Path:
    """Save the LoRA adapter (PEFT format, safetensors) and the tokenizer to ``path``.

    A 4-bit base is noted in the model card (``note_4bit_base``). A PiSSA or OLoRA adapter (trained on a
    base from which its start was subtracted) is saved converted to plain LoRA for the ORIGINAL base, as
    PEFT documents (``path_initial_model_for_weight_conversion``: [A | A0], [B | -B0], rank 2r, alpha x2; x sqrt(2) with rsLoRA),
    so base + adapter loads like any LoRA adapter and merges into the base weights on disk.
    """
    with folder_written_aside(path) as staging:
        scratch = staging.parent / f".{staging.name}.initial"
        try:
            model.save_pretrained(staging, **as_plain_lora(model, scratch / "initial"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        tokenizer.save_pretrained(staging)
        note_model_card(model, staging)
    return Path(path)


def note_model_card(model, adapter_dir: str | Path) -> None:
    """The 4-bit base noted in the adapter's model card (``note_4bit_base``); nothing for a 16-bit base."""
    quantization = base_quantization_config(model)
    if quantization is not None and (Path(adapter_dir) / "adapter_config.json").is_file():
        base_name = getattr(getattr(model, "config", None), "_name_or_path", "") or "the base model"
        note_4bit_base(adapter_dir, quantization, base_name)


def probe_logits(model, tokenizer):
    """Logits of the model on a fixed chat prompt (float32, on CPU)."""
    import torch

    text = tokenizer.apply_chat_template(PROBE_MESSAGES, tokenize=False, add_generation_prompt=True)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(**batch).logits.float().cpu()
    finally:
        model.train(was_training)
    return batch["input_ids"].cpu(), logits


def save_reference_logits(model, tokenizer, path: str | Path) -> Path:
    """Store the probe prompt's input ids and the trained model's logits for later reload checks."""
    from safetensors.torch import save_file

    input_ids, logits = probe_logits(model, tokenizer)
    save_file({"input_ids": input_ids.contiguous(), "logits": logits.contiguous()}, str(path))
    return Path(path)
