"""Saving a trained adapter (standard PEFT layout) and checking that it reloads exactly.

    from loralab.adapters.save import save_adapter, save_reference_logits
    save_adapter(model, tokenizer, run_dir / "adapter")         # adapter_config.json + safetensors
    save_reference_logits(model, tokenizer, run_dir / "reference_logits.safetensors")

The folder is written aside and renamed into place, so an interrupted save never leaves half an
adapter. The reference logits let anyone reload base + adapter later and compare.
"""

from __future__ import annotations

from pathlib import Path

from loralab.atomic_folder import folder_written_aside

PROBE_MESSAGES = [{"role": "user", "content": "What is the capital of Peru?"}]


def save_adapter(model, tokenizer, path: str | Path) -> Path:
    """Save the LoRA adapter (PEFT format, safetensors) and the tokenizer to ``path``."""
    with folder_written_aside(path) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return Path(path)


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
