"""LoRA variants without a model: the params and their one-line refusals, the names and scales, the planner's
counts and memory for DoRA, the manifest's variant record and the GGUF LoRA refusal (the trained checks:
``test_lora_variants_trained.py``)."""

from __future__ import annotations

import json
import math

import pytest

from loralab.params.errors import ParamsError
from loralab.params.preference_config import validate_preference_params
from loralab.params.run_config import changes_base, scale_formula, validate_params


def test_defaults_stay_plain_lora():
    cfg = validate_params({})
    assert (cfg.use_rslora, cfg.use_dora, cfg.init_lora_weights, cfg.loraplus_lr_ratio) == (False, False, True, None)
    assert cfg.lora_variant == "LoRA"
    assert scale_formula(cfg.lora_alpha, cfg.lora_r, cfg.use_rslora) == "scale alpha/r = 32/16 = 2"


@pytest.mark.parametrize(("params", "name", "scale"), [
    ({"use_rslora": True, "lora_r": 64}, "rsLoRA", 32 / 8),
    ({"use_dora": True}, "DoRA", 2.0),
    ({"init_lora_weights": "gaussian"}, "LoRA (Gaussian init)", 2.0),
    ({"init_lora_weights": "pissa", "load_in_4bit": False}, "LoRA (PiSSA init)", 2.0),
    ({"init_lora_weights": "pissa_niter_4", "load_in_4bit": False}, "LoRA (PiSSA init, 4 iterations)", 2.0),
    ({"init_lora_weights": "olora", "load_in_4bit": False}, "LoRA (OLoRA init)", 2.0),
    ({"loraplus_lr_ratio": 16}, "LoRA + LoRA+ x16", 2.0),
    ({"use_rslora": True, "use_dora": True, "lora_r": 4}, "rsDoRA", 16.0),
])
def test_variant_names_and_effective_scales(params, name, scale):
    cfg = validate_params(params)
    assert cfg.lora_variant == name
    assert scale_formula(cfg.lora_alpha, cfg.lora_r, cfg.use_rslora).endswith(f" = {scale:g}")
    if cfg.use_rslora:
        assert scale_formula(cfg.lora_alpha, cfg.lora_r, True).startswith(f"scale alpha/sqrt(r) = 32/sqrt({cfg.lora_r})")


@pytest.mark.parametrize(("params", "words"), [
    ({"init_lora_weights": "pissa"}, "4-bit base cannot hold"),  # load_in_4bit is the default
    ({"init_lora_weights": "olora", "load_in_4bit": True}, "set load_in_4bit: false"),
    ({"init_lora_weights": "pissa_niter_2"}, "4-bit base"),
    ({"use_dora": True, "full_finetuning": True, "load_in_4bit": False}, "full_finetuning trains every weight"),
    ({"use_rslora": True, "loraplus_lr_ratio": 4, "full_finetuning": True, "load_in_4bit": False},
     "use_rslora, loraplus_lr_ratio shape a LoRA adapter"),
    ({"use_dora": True, "init_lora_weights": "pissa", "load_in_4bit": False}, "drops DoRA's magnitudes"),
    ({"init_lora_weights": "eva"}, "write true, gaussian, pissa"),
    ({"init_lora_weights": "loftq"}, "not 'loftq'"),
    ({"init_lora_weights": "pissa_niter_x", "load_in_4bit": False}, "pissa_niter_<N>"),
    ({"init_lora_weights": False}, "false starts B non-zero"),
    ({"loraplus_lr_ratio": 0.5}, "greater than or equal to 1"),
    ({"loraplus_lr_ratio": 4, "parallel_strategy": "fsdp", "num_processes": 2}, "FSDP's flattened shards"),
    ({"use_dora": "yes"}, "write true or false"),
])
def test_impossible_combinations_are_refused_in_one_line(params, words):
    with pytest.raises(ParamsError, match=words) as caught:
        validate_params(params)
    assert "\n" not in str(caught.value)


def test_yaml_params_file_takes_the_variant_knobs(tmp_path):
    from loralab.params.run_config import load_params

    path = tmp_path / "p.yaml"
    path.write_text("load_in_4bit: false\ninit_lora_weights: pissa\nuse_rslora: true\nloraplus_lr_ratio: 16\n")
    cfg = load_params(path)
    assert cfg.init_lora_weights == "pissa" and cfg.use_rslora and cfg.loraplus_lr_ratio == 16.0
    path.write_text("init_lora_weights: true\n")
    assert load_params(path).init_lora_weights is True


def test_notebook_04_takes_the_variants_and_refuses_them_with_an_sft_adapter():
    cfg = validate_preference_params({"use_dora": True, "loraplus_lr_ratio": 8})
    assert cfg.lora_variant == "DoRA + LoRA+ x8"
    with pytest.raises(ParamsError, match="sft_adapter brings its own"):
        validate_preference_params({"use_rslora": True, "sft_adapter": "runs/x/adapter"})
    assert validate_preference_params({"loraplus_lr_ratio": 8, "sft_adapter": "runs/x/adapter"}).loraplus_lr_ratio == 8


def test_changes_base_only_for_pissa_and_olora():
    assert [changes_base(v) for v in (True, "gaussian", "pissa", "pissa_niter_16", "olora")] == [
        False, False, True, True, True]


def test_manifest_variant_record():
    from loralab.adapters.manifest import variant_record

    record = variant_record(validate_params({"init_lora_weights": "olora", "load_in_4bit": False, "lora_r": 8}))
    assert record.converted_to_lora and record.trained_r == 8 and "rank 2r" in record.saved_as
    assert variant_record(validate_params({"use_dora": True})).saved_as == "as trained"
    assert variant_record(validate_params({"full_finetuning": True, "load_in_4bit": False})) is None


@pytest.mark.parametrize(("config", "refused"), [
    ({"r": 8, "lora_alpha": 16}, None),
    ({"r": 8, "use_dora": True}, "DoRA"),
    ({"r": 8, "use_rslora": True}, "rsLoRA"),
    ({"r": 8, "init_lora_weights": "pissa"}, "residual base"),
    ({"r": 16, "init_lora_weights": True}, None),  # a PiSSA adapter as save_adapter writes it: converted
])
def test_gguf_lora_refusal_names_the_variant_and_offers_the_merged_gguf(tmp_path, config, refused):
    from loralab.export.gguf_export import check_gguf_lora_variant, gguf_lora_refusal

    (tmp_path / "adapter_config.json").write_text(json.dumps(config))
    message = gguf_lora_refusal(config)
    if refused is None:
        assert message is None
        check_gguf_lora_variant(tmp_path)
        return
    assert refused in message and "lora=False" in message and "merged model's GGUF" in message
    with pytest.raises(ValueError, match="cannot apply"):
        check_gguf_lora_variant(tmp_path)


def test_planner_counts_and_memory_for_dora():
    from loralab.plan.architectures import get_architecture
    from loralab.plan.lora_math import trainable_params
    from loralab.plan.memory import dora_activation_bytes, estimate_memory, layer_activation_bytes, setup_for
    from loralab.plan.planner import plan

    arch = get_architecture("llama-3.1-8b")
    out_rows = sum(out for _, out in arch.linear_shapes().values())
    assert trainable_params(arch, 16, dora=True) - trainable_params(arch, 16) == arch.layers * out_rows
    lora = estimate_memory(arch, setup_for("unsloth", method="qlora", batch=2, seq=2048, r=16))
    dora = estimate_memory(arch, setup_for("unsloth", method="qlora", batch=2, seq=2048, r=16, dora=True))
    assert dora.total_gb > lora.total_gb
    names = [term.name for term in dora.terms]
    assert "DoRA weights (LoRA + magnitudes)" in names and "DoRA weight-norm buffer" in names
    s = setup_for("hf", method="lora", batch=1, seq=128, r=8, dora=True)
    assert dora_activation_bytes(arch, s) == (2 + 4) * out_rows  # a bf16 base and an fp32 LoRA output, d_out each
    assert layer_activation_bytes(arch, s) - layer_activation_bytes(arch, setup_for(
        "hf", method="lora", batch=1, seq=128, r=8)) == dora_activation_bytes(arch, s)
    planned = plan("llama-3.1-8b", gpu_gb=16, dora=True)
    assert planned.to_dict()["dora"] is True
    assert planned.param_counts["qlora"][0] == trainable_params(arch, 16, dora=True)
    assert planned.param_counts["full"][0] == arch.param_count()
    assert math.isclose(planned.fits["full"].estimate.total_gb, plan("llama-3.1-8b", gpu_gb=16).fits[
        "full"].estimate.total_gb)  # full fine-tuning has no adapter: DoRA changes nothing there


def test_plan_cli_takes_dora(capsys):
    from loralab.plan.cli import main

    assert main(["embedded/smollm2-135m-instruct", "--gpu-gb", "16", "--lora-r", "8", "--dora", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dora"] is True and out["methods"]["qlora"]["trainable_params"] == 2_597_760  # PEFT's count at r=8 (DESIGN.md)


def test_variants_sweep_validates_offline():
    from pathlib import Path

    from loralab.sweeps.sweep import plan_sweep

    plan = plan_sweep(Path(__file__).parents[1] / "params" / "sweeps" / "variants.yaml", sweeps_root="/nonexistent")
    names = [validate_params(run.params).lora_variant for run in plan.runs]
    assert names == ["LoRA", "rsLoRA", "DoRA", "LoRA (PiSSA init, 4 iterations)", "LoRA + LoRA+ x16"]
    assert all(run.params["load_in_4bit"] is False for run in plan.runs)  # PiSSA needs the 16-bit base


def test_dora_on_a_4bit_base_is_refused_on_a_cpu_machine_only():
    from loralab.params.runtime_check import RuntimeCheckError, check_dora_base

    cfg = validate_params({"use_dora": True})  # load_in_4bit is the default
    with pytest.raises(RuntimeCheckError, match="write load_in_4bit: false for DoRA"):
        check_dora_base(cfg, on_gpu=False)
    check_dora_base(cfg, on_gpu=True)
    check_dora_base(validate_params({"use_dora": True, "load_in_4bit": False}), on_gpu=False)
    check_dora_base(validate_params({}), on_gpu=False)
