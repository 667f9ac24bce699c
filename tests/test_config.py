"""The params validator: good values pass, every bad one is refused with an actionable message."""

from __future__ import annotations

import pytest
import yaml

from loralab.config import ParamsError, RunConfig, load_params, params_from_namespace, validate_params


def test_defaults_follow_the_tutorial():
    cfg = validate_params({})
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 32, 0.05)
    assert cfg.target_module_list == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert cfg.load_in_4bit and not cfg.full_finetuning
    assert cfg.lora_scale == 2.0


def test_attention_only_preset():
    assert validate_params({"target_modules": "attention"}).target_module_list == ["q_proj", "k_proj", "v_proj",
                                                                                  "o_proj"]


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ParamsError, match=r"unknown parameter 'lora_rank'.*Did you mean 'lora_r'"):
        validate_params({"lora_rank": 8})
    with pytest.raises(ParamsError, match="learning_rate"):
        validate_params({"learnig_rate": 1e-4})


@pytest.mark.parametrize(
    "params, field",
    [
        ({"lora_r": 0}, "lora_r"),
        ({"lora_r": -4}, "lora_r"),
        ({"lora_r": 8.5}, "lora_r"),
        ({"lora_alpha": 0}, "lora_alpha"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"lora_dropout": -0.1}, "lora_dropout"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": "fast"}, "learning_rate"),
        ({"max_steps": 0}, "max_steps"),
        ({"max_seq_length": 8}, "max_seq_length"),
        ({"target_modules": "mlp"}, "target_modules"),
        ({"target_modules": []}, "target_modules"),
        ({"model_name": "embedded/llama-70b"}, "model_name"),
        ({"model_name": "not a model"}, "model_name"),
        ({"eval_task": "accuracy"}, "eval_task"),
    ],
)
def test_bad_values_are_refused_with_the_field_name(params, field):
    with pytest.raises(ParamsError, match=field):
        validate_params(params)


def test_full_finetuning_needs_a_16_bit_base():
    with pytest.raises(ParamsError, match="load_in_4bit: false"):
        validate_params({"full_finetuning": True})
    assert validate_params({"full_finetuning": True, "load_in_4bit": False}).full_finetuning


def test_yaml_scientific_notation_string_is_a_number(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("learning_rate: 2e-4\nlora_r: 8\n")
    assert isinstance(yaml.safe_load(path.read_text())["learning_rate"], str)  # the YAML trap is real
    assert load_params(path).learning_rate == pytest.approx(2e-4)


def test_broken_yaml_and_missing_file_are_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora_r: [8\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="does not exist"):
        load_params(tmp_path / "nope.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- lora_r\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(listy)


def test_notebook_namespace_catches_injected_typos():
    before = {"os", "time"}
    namespace = {"os": None, "time": None, "lora_r": 8, "lora_alpah": 16, "_private": 1}
    with pytest.raises(ParamsError, match="Did you mean 'lora_alpha'"):
        params_from_namespace(namespace, before)
    del namespace["lora_alpah"]
    assert params_from_namespace(namespace, before).lora_r == 8


def test_every_field_has_a_help_line():
    assert all(f.description for f in RunConfig.model_fields.values())
