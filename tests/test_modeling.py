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


def test_all_linear_is_peft_all_linear_and_the_planner_counts_it():
    """"all-linear" reaches PEFT as it is (every Linear but lm_head) through Unsloth's get_peft_model; the planner's
    count is what the model reports, for the 4-bit base notebook 01 loads."""
    from loralab.model.embedded import resolve_model_path
    from loralab.model.loading import attach_lora, count_parameters, load_model, lora_layer_table
    from loralab.plan.architectures import get_architecture
    from loralab.plan.lora_math import trainable_params

    cfg = validate_params({"model_name": TINY_MODEL, "lora_r": 4})
    assert cfg.target_modules == "all-linear" and cfg.load_in_4bit
    model, _ = load_model(cfg)
    model = attach_lora(model, cfg)
    resolved = {name.rsplit(".", 1)[-1] for name in model.peft_config["default"].target_modules}  # what PEFT picked
    assert resolved == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, resolved
    layers = lora_layer_table(model)
    assert {layer.name.rsplit(".", 1)[-1] for layer in layers} == resolved  # lm_head left out
    arch = get_architecture(resolve_model_path(TINY_MODEL))  # read from its config.json
    assert count_parameters(model)[0] == sum(layer.params for layer in layers) == trainable_params(arch, 4, "all-linear")


def test_all_linear_adapts_every_linear_layer_of_another_architecture(tmp_path):
    """OPT names its layers q/k/v/out_proj and fc1/fc2: "all-linear" adapts all of them, as PEFT means it."""
    import torch
    from transformers import AutoTokenizer, OPTConfig, OPTForCausalLM

    from loralab.model.embedded import resolve_model_path
    from loralab.model.loading import attach_lora, load_model, lora_layer_table

    torch.manual_seed(0)
    OPTForCausalLM(OPTConfig(vocab_size=49152, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                             word_embed_proj_dim=32)).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(resolve_model_path(TINY_MODEL)).save_pretrained(tmp_path)
    cfg = validate_params({"model_name": str(tmp_path), "lora_r": 4, "load_in_4bit": False})
    model, _ = load_model(cfg)
    linears = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    model = attach_lora(model, cfg)
    adapted = {layer.name.removeprefix("base_model.model.") for layer in lora_layer_table(model)}
    assert adapted == linears - {"lm_head"} and {name.rsplit(".", 1)[-1] for name in adapted} == {
        "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"}


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
