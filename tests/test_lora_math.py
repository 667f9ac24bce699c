"""LoRA parameter math and the architecture table, checked against PEFT and transformers themselves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loralab.plan.architectures import ARCHITECTURES, get_architecture
from loralab.plan.lora_math import alpha_scale, lora_params, trainable_params


def test_tutorial_example_4096():
    # Tutorial: 4096 x 4096 at r=16 -> 131,072 trainable vs 16,777,216 full (~0.8%).
    assert lora_params(4096, 4096, 16) == 131_072
    assert 0.007 < 131_072 / (4096 * 4096) < 0.009


@given(st.integers(1, 10_000), st.integers(1, 10_000), st.integers(1, 512))
def test_lora_params_is_shapes_of_a_and_b(d, k, r):
    assert lora_params(d, k, r) == r * k + d * r  # A is r x k, B is d x r


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match="positive"):
        lora_params(4096, 4096, 0)
    with pytest.raises(ValueError, match="targets"):
        trainable_params("llama-3.1-8b", 16, "everything")


def test_lookup_by_aliases_and_unknown_names():
    arch = get_architecture("llama-3.1-8b")
    for name in (
        "meta-llama/Llama-3.1-8B",
        "unsloth/Llama-3.1-8B-Instruct-bnb-4bit",
        "unsloth/Meta-Llama-3.1-8B-Instruct",
        "meta-llama/Meta-Llama-3-8B",
    ):
        assert get_architecture(name) is arch
    assert get_architecture("Qwen/Qwen2.5-7B-Instruct").name == "qwen2.5-7b"
    assert get_architecture("embedded/smollm2-135m-instruct").name == "smollm2-135m"
    with pytest.raises(ValueError, match="llama-3.1-8b"):
        get_architecture("llama-3.1-9b")


def _hf_config(arch):
    import transformers

    return transformers.AutoConfig.for_model(
        arch.family,
        hidden_size=arch.hidden,
        intermediate_size=arch.intermediate,
        num_hidden_layers=arch.layers,
        num_attention_heads=arch.heads,
        num_key_value_heads=arch.kv_heads,
        head_dim=arch.head_dim,
        vocab_size=arch.vocab,
        tie_word_embeddings=arch.tied_embeddings,
    )


@pytest.mark.parametrize("arch", ARCHITECTURES, ids=lambda a: a.name)
def test_table_totals_match_shapes_and_a_meta_model(arch):
    """The table's published total equals our shape count and transformers' own model (no weights)."""
    import torch
    import transformers

    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(_hf_config(arch))
    assert arch.param_count() == arch.total_params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-7b", "gemma-2-2b", "phi-3.5-mini", "gemma-3-1b"])
@pytest.mark.parametrize("targets", ["all-linear", "attention"])
def test_trainable_count_equals_peft_on_meta_models(name, targets):
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    arch = get_architecture(name)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(_hf_config(arch))
    modules = "all-linear" if targets == "all-linear" else list(arch.attention_modules())
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=modules))
    assert peft_model.get_nb_trainable_parameters()[0] == trainable_params(arch, 8, targets)


@pytest.mark.slow
def test_trainable_count_equals_peft_on_the_embedded_model():
    import transformers
    from peft import LoraConfig, get_peft_model

    from loralab.model.embedded import resolve_model_path

    model = transformers.AutoModelForCausalLM.from_pretrained(
        resolve_model_path("embedded/smollm2-135m-instruct")
    )
    arch = get_architecture(resolve_model_path("embedded/smollm2-135m-instruct"))  # read from its config.json
    assert arch.param_count() == sum(p.numel() for p in model.parameters()) == 134_515_008
    for r in (8, 16, 64):
        peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules="all-linear"))
        assert peft_model.get_nb_trainable_parameters()[0] == trainable_params(
            "embedded/smollm2-135m-instruct", r
        )
        model = peft_model.unload()


def test_fraction_and_alpha_scale():
    arch = get_architecture("llama-3.1-8b")
    assert trainable_params(arch, 16) / arch.param_count() < 0.01  # "<1% of the parameters"
    assert alpha_scale(32, 16) == 2.0


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("unsloth/Qwen2.5-7B-Instruct-unsloth-bnb-4bit", "qwen2.5-7b"),
        ("google/gemma-2-9b-it", "gemma-2-9b"),
        ("microsoft/Phi-3-mini-4k-instruct", "phi-3.5-mini"),
        ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.1-70b"),
        ("unsloth/gemma-3-1b-it", "gemma-3-1b"),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-135m"),
        ("mistralai/Mistral-7B-Instruct-v0.3", "mistral-7b-v0.3"),
    ],
)
def test_hub_and_unsloth_names_resolve(name, expected):
    assert get_architecture(name).name == expected


def test_local_folder_with_config_json(tmp_path):
    cfg = {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(__import__("json").dumps(cfg))
    arch = get_architecture(str(tmp_path))
    assert arch.param_count() == get_architecture("qwen2.5-0.5b").total_params
    assert trainable_params(arch, 16) == trainable_params("qwen2.5-0.5b", 16)
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ValueError, match="hidden_size"):
        get_architecture(str(tmp_path))


@pytest.mark.parametrize("name", ["llama-3.1-8b", "qwen2.5-7b", "gemma-2-2b", "phi-3.5-mini", "smollm2-135m"])
@pytest.mark.parametrize("targets", ["all-linear", "attention"])
def test_dora_count_equals_peft_on_meta_models(name, targets):
    """DoRA adds one magnitude per output row of each adapted layer; PEFT's own count on a weightless model."""
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model

    arch = get_architecture(name)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(_hf_config(arch))
    modules = "all-linear" if targets == "all-linear" else list(arch.attention_modules())
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=modules, use_dora=True))
    assert peft_model.get_nb_trainable_parameters()[0] == trainable_params(arch, 8, targets, dora=True)
    assert trainable_params(arch, 8, targets, dora=True) > trainable_params(arch, 8, targets)


def test_rslora_scale():
    assert alpha_scale(32, 64, rslora=True) == 4.0 and alpha_scale(32, 64) == 0.5
