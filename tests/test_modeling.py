"""The three training modes load through Unsloth as the config asks (the tiny random model, 16-bit base)."""

from __future__ import annotations

import pytest

from conftest import TINY_MODEL
from loralab.params.run_config import validate_params

pytestmark = pytest.mark.slow


def test_16_bit_lora_and_full_finetuning_counts():
    from loralab.model.loading import attach_lora, count_parameters, load_model, lora_layer_table

    lora_cfg = validate_params({"model_name": TINY_MODEL, "load_in_4bit": False, "target_modules": "attention", "lora_r": 4})
    model, _ = load_model(lora_cfg)
    assert not any(hasattr(p, "quant_state") for p in model.parameters()), "16-bit base expected"
    model = attach_lora(model, lora_cfg)
    trainable, total = count_parameters(model)
    layers = lora_layer_table(model)
    assert {layer.name.rsplit(".", 1)[-1] for layer in layers} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert trainable == sum(layer.params for layer in layers) and all(layer.r == 4 for layer in layers)
    del model

    full_cfg = validate_params({"model_name": TINY_MODEL, "load_in_4bit": False, "full_finetuning": True})
    model, _ = load_model(full_cfg)
    model = attach_lora(model, full_cfg)  # full fine-tuning: no adapters, every weight trains
    trainable, total = count_parameters(model)
    assert trainable == total and not lora_layer_table(model)


def test_full_finetuning_on_a_cpu_loads_float32_weights():
    """bf16 weights with no float32 master copy lose small updates (docs/sweeps.md, Findings, decision flow)."""
    import torch

    from loralab.model.loading import _dtype
    from loralab.params.run_config import validate_params

    full = validate_params({"full_finetuning": True, "load_in_4bit": False})
    lora = validate_params({"load_in_4bit": False})
    assert not torch.cuda.is_available()
    assert _dtype(full) is torch.float32
    assert _dtype(lora) is None, "LoRA keeps Unsloth's choice (bf16 where the CPU has it)"
