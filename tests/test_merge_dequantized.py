"""A QLoRA adapter merged into the dequantized NF4 weights reproduces the trained model; into the 16-bit ones, not.

One small adapter is trained on the embedded model's 4-bit base with notebook 03's settings (6 steps,
r=8, learning rate 3e-3: enough for the JSON shape to show), then merged both ways. Both merged
folders are compared with the model as trained (the adapter on its own 4-bit base) by the parity
check merge_adapter runs by default: 8 held-out questions x 16 new tokens, fp32.

Measured here (2 CPU cores, fp32): dequantized merge greedy 8/8 identical, top-1 1.000, mean KL 4.9e-5
(max 8.2e-4); original (16-bit) merge greedy 2/8, top-1 0.925, mean KL 1.0e-1 (max 1.43). The default
run's adapter, 8 x 24: dequantized 8/8, 1.000, 1.3e-5 / max 2.0e-4; original 3/8, 0.924, 4.9e-2 / 1.07.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
PARITY = {"parity_prompts_n": 8, "parity_new_tokens": 16}


@pytest.fixture(scope="module")
def qlora_adapter(tmp_path_factory) -> Path:
    from loralab.adapters.train_and_save import train_adapter
    from loralab.data.chat_rows import load_chat_rows
    from loralab.params.adapters_demo import validate_demo_params

    cfg = validate_demo_params({"load_in_4bit": True}).train_config()
    out = tmp_path_factory.mktemp("qlora")
    return train_adapter(cfg, load_chat_rows("embedded/json-answers"), out / "json", "json",
                         reference_logits=False).path


@pytest.fixture(scope="module")
def merges(qlora_adapter, tmp_path_factory):
    from loralab.adapters.merge import merge_adapter

    out = tmp_path_factory.mktemp("merged")
    dequantized = merge_adapter(qlora_adapter, out / "dequantized", **PARITY)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        original = merge_adapter(qlora_adapter, out / "original", merge_into="original", **PARITY)
    print(f"\n{dequantized.summary()}\n{original.summary()}")
    return dequantized, original, [str(w.message) for w in caught]


def test_dequantized_merge_reproduces_the_trained_models_answers(merges):
    dequantized, _, _ = merges
    assert dequantized.merge_into == "dequantized" and dequantized.base_quantization == "nf4-4bit"
    assert dequantized.dequantized_layers == 30 * 7
    assert dequantized.dequantized_base_max_abs_diff == 0.0  # dequantize_4bit is what Linear4bit computes
    assert dequantized.max_abs_diff_fp32 < 1e-3 * dequantized.adapter_effect, vars(dequantized)
    parity = dequantized.parity
    assert parity.passed, parity.summary()
    assert parity.greedy_agreement >= 7 / 8 and parity.top1_agreement >= 0.99 and parity.mean_kl < 1e-3, \
        parity.summary()


def test_dequantized_merge_is_closer_than_the_16bit_merge(merges):
    dequantized, original, caught = merges
    assert original.merge_into == "original"
    assert any("merge_into='original'" in m and "NF4 quantization error" in m for m in caught), caught
    assert "NOT the model as trained" in original.reference
    d, o = dequantized.parity, original.parity
    assert d.mean_kl < o.mean_kl / 10, (d.summary(), o.summary())
    assert d.max_kl < o.max_kl and d.top1_agreement >= o.top1_agreement
    assert d.greedy_agreement >= o.greedy_agreement
    assert not o.passed, o.summary()  # the 16-bit merge of a QLoRA adapter drifts past the 16-bit thresholds
    assert any("drifted from the model as trained" in m for m in caught), caught


def test_parity_numbers_are_in_the_merged_folders_manifest(merges, qlora_adapter):
    from loralab.adapters.manifest import read_manifest

    for result in merges[:2]:
        manifest = read_manifest(result.path)
        assert manifest["kind"] == "merged-model" and manifest["base_quantization"] == "nf4-4bit"
        assert manifest["merge"]["merge_into"] == result.merge_into
        assert manifest["merged_from"]["adapter_dir"] == str(Path(qlora_adapter).resolve())
        parity = manifest["parity"]
        for key in ("greedy_agreement", "top1_agreement", "mean_kl", "max_kl"):
            assert parity[key] == pytest.approx(getattr(result.parity, key)), key
        assert parity["prompts"] == 8 and parity["max_new_tokens"] == 16 and parity["passed"] == result.parity.passed
        assert json.loads(json.dumps(result.as_dict()))["parity"]["mean_kl"] == pytest.approx(result.parity.mean_kl)


def test_qlora_adapter_card_says_4bit_and_plain_peft_loads_it(qlora_adapter):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from loralab.adapters.manifest import read_manifest
    from loralab.adapters.save import PEFT_QUANTIZATION_LINE
    from loralab.adapters.verified_loading import verify_adapter_files
    from loralab.model.embedded import resolve_model_path

    card = (Path(qlora_adapter) / "README.md").read_text()
    assert PEFT_QUANTIZATION_LINE in card and "- bnb_4bit_quant_type: nf4" in card and "- load_in_4bit: True" in card
    assert "Trained on a 4-bit (NF4) base" in card and "- 4-bit" in card.split("---")[1]
    verify_adapter_files(qlora_adapter)  # the manifest recorded the README with the note
    assert "README.md" in read_manifest(qlora_adapter)["adapter_files"]
    config = json.loads((Path(qlora_adapter) / "adapter_config.json").read_text())
    assert "base_quantization" not in config  # PEFT's own file stays as PEFT wrote it
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path("embedded/smollm2-135m-instruct"),
                                                dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, str(qlora_adapter))
    assert "default" in model.peft_config
    assert not [w for w in caught if "Unexpected" in str(w.message)], [str(w.message) for w in caught]
