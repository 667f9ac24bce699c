"""The params validator: good values pass, every bad one is refused with an actionable message."""

from __future__ import annotations

import pytest
import yaml

from loralab.params.errors import ParamsError
from loralab.params.notebook import params_from_namespace
from loralab.params.run_config import RunConfig, load_params, validate_params
from loralab.params.yaml_reader import read_params_file
from loralab.plan.lora_math import alpha_scale


def test_defaults_follow_the_tutorial():
    cfg = validate_params({})
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 32, 0.05)
    assert cfg.target_module_list == "all-linear"  # PEFT's own meaning: every Linear layer but lm_head
    assert cfg.load_in_4bit and not cfg.full_finetuning
    assert alpha_scale(cfg.lora_alpha, cfg.lora_r, cfg.use_rslora) == 2.0


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
        ({"eval_fraction": 1.5}, "eval_fraction"),
        # the Trainer rotates the previous checkpoint away before the new one is marked complete: one is too few
        ({"save_total_limit": 1}, "save_total_limit"),
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


def test_a_second_run_all_in_one_kernel_reads_the_edited_values():
    """The names taken before the parameters cell hold every parameter on a second "Run all": the edit counts."""
    namespace = {"os": None, "lora_r": 4, "lora_alpha": 8, "lora_rank": 9, "cfg": None}
    second_run_before = set(namespace)  # the first run's parameters (and a misspelt one it refused then) are here
    cfg = params_from_namespace(namespace, second_run_before)
    assert (cfg.lora_r, cfg.lora_alpha) == (4, 8)
    assert params_from_namespace(namespace, second_run_before, file_params={"lora_r": 2}).lora_r == 2


def test_every_field_has_a_help_line():
    assert all(f.description for f in RunConfig.model_fields.values())


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "Yes", "OFF"])
def test_yaml_11_booleans_in_a_boolean_field_are_refused(tmp_path, word):
    path = tmp_path / "p.yaml"
    path.write_text(f"load_in_4bit: {word}\n")
    assert read_params_file(path)["load_in_4bit"] == word  # stays visible as text
    with pytest.raises(ParamsError, match=rf"load_in_4bit: write true or false, not '{word}' \(YAML 1.1"):
        load_params(path)


@pytest.mark.parametrize("value", [1, 0, "true", "maybe", None])
def test_boolean_fields_take_only_true_or_false(value):
    with pytest.raises(ParamsError, match="use_gradient_checkpointing: write true or false"):
        validate_params({"use_gradient_checkpointing": value})


def test_text_fields_keep_yaml_11_boolean_words_and_floats_keep_working(tmp_path):
    """The Norway problem: `dataset_split: no` stays the text 'no'; 2e-4 is a number."""
    path = tmp_path / "p.yaml"
    path.write_text("dataset: data/no.jsonl\ndataset_split: no\nrun_dir: off\nlearning_rate: 2e-4\n"
                    "load_in_4bit: false\nlora_alpha: 1e1\neval_dataset: ''\neval_fraction: 0.05\n"
                    "eval_scorers: [contains]\n")
    data = read_params_file(path)
    assert data["dataset_split"] == "no" and data["run_dir"] == "off"
    assert data["learning_rate"] == pytest.approx(2e-4) and isinstance(data["learning_rate"], float)
    cfg = load_params(path)
    assert (cfg.dataset_split, cfg.run_dir, cfg.load_in_4bit, cfg.lora_alpha) == ("no", "off", False, 10.0)


def test_booleans_that_a_yaml_11_reader_made_are_explained():
    with pytest.raises(ParamsError, match=r"dataset_split: expected text but got the boolean False.*quote"):
        validate_params({"dataset_split": False})
    with pytest.raises(ParamsError, match="lora_r: expected a number, not the boolean True"):
        validate_params({"lora_r": True})


@pytest.mark.parametrize("name", ["embedded/smollm2-135m-instruct", "unsloth/Llama-3.2-1B-Instruct-bnb-4bit",
                                  "Qwen/Qwen2.5-0.5B", "org_1/model.v2-x"])
def test_plausible_model_names_pass(name):
    assert validate_params({"model_name": name}).model_name == name


def test_a_local_model_folder_needs_config_json(tmp_path):
    with pytest.raises(ParamsError, match="no config.json"):
        validate_params({"model_name": str(tmp_path)})
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ParamsError, match="holds config.json but no weights"):
        validate_params({"model_name": str(tmp_path)})
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert validate_params({"model_name": str(tmp_path)}).model_name == str(tmp_path)
    with pytest.raises(ParamsError, match="no config.json"):
        validate_params({"model_name": str(tmp_path / "missing")})


@pytest.mark.parametrize("name", ["llama", "meta llama/8b", "org/name/extra", "org/-bad", "org/bad.", "a--b/c",
                                  "org/x.git", "org/" + "x" * 97, "", "https://huggingface.co/org/m", "órg/m"])
def test_implausible_model_names_say_what_to_write(name):
    with pytest.raises(ParamsError, match=r"model_name: .*embedded/smollm2-135m-instruct.*config\.json.*org/name"):
        validate_params({"model_name": name})


@pytest.mark.parametrize("key", ["hf_token", "token", "HF_TOKEN", "hub_token", "api_key", "wandb_api_key",
                                 "secret", "password"])
def test_secret_named_parameters_are_refused_without_echoing_the_value(key):
    with pytest.raises(ParamsError, match="looks like a secret.*HF_TOKEN in the environment") as error:
        validate_params({key: "hf_s3cr3tvalue"})
    assert "hf_s3cr3tvalue" not in str(error.value)


def test_trust_remote_code_is_off_unless_the_params_file_turns_it_on(tmp_path):
    assert validate_params({}).trust_remote_code is False
    path = tmp_path / "p.yaml"
    path.write_text("trust_remote_code: true\n")
    assert load_params(path).trust_remote_code is True
    path.write_text("trust_remote_code: yes\n")
    with pytest.raises(ParamsError, match="write true or false"):
        load_params(path)


def test_params_file_that_is_not_utf8_is_clear(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_bytes(b"lora_r: \xff\xfe\n")
    with pytest.raises(ParamsError, match="not UTF-8"):
        load_params(path)
