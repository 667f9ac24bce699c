"""Merge mechanics and the parity check on the tiny random model (the embedded tokenizer, 2 layers of width 64).

No embedded-model weights load here: the base is random, so these tests check the plumbing (16-bit
adapters merge into the original weights only, NF4 dequantization is what the 4-bit layer computes,
parity lands in the merged folder's manifest, ``strict`` raises and writes nothing, the model card
notes a 4-bit base and PEFT still loads the adapter). The numbers on the real model are in
``test_merge_dequantized.py``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from conftest import TINY_MODEL
from loralab.adapters.manifest import MANIFEST_NAME, read_manifest, write_manifest
from loralab.export.parity import ExportParityError, ParityThresholds
from loralab.params.run_config import validate_params

QUICK = {"parity_prompts_n": 3, "parity_new_tokens": 6}


@pytest.fixture(scope="module")
def tiny_base() -> Path:
    from loralab.model.embedded import resolve_model_path

    return Path(resolve_model_path(TINY_MODEL))


def _adapter(base: Path, folder: Path, load_in_4bit: bool) -> Path:
    """A LoRA with random A and B (a visible effect) saved like a run saves it, manifest included."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.adapters.save import save_adapter

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                             init_lora_weights=False, task_type="CAUSAL_LM"))
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    save_adapter(model, tokenizer, folder)
    cfg = validate_params({"model_name": str(base), "load_in_4bit": load_in_4bit, "lora_r": 4, "lora_alpha": 8,
                           "max_seq_length": 128})
    write_manifest(folder, cfg, tokenizer=tokenizer)
    return folder


@pytest.fixture(scope="module")
def adapter_16bit(tiny_base, tmp_path_factory) -> Path:
    return _adapter(tiny_base, tmp_path_factory.mktemp("a16") / "adapter", load_in_4bit=False)


def test_16bit_adapter_merges_into_the_original_weights_with_parity_in_the_manifest(adapter_16bit, tmp_path):
    from loralab.export.merge import merge_adapter

    result = merge_adapter(adapter_16bit, tmp_path / "merged", **QUICK)
    assert result.merge_into == "original" and result.dequantized_layers == 0
    assert "model as trained" in result.reference
    assert result.max_abs_diff_fp32 < 1e-3 * max(1.0, result.adapter_effect)
    manifest = read_manifest(tmp_path / "merged")
    assert manifest.kind == "merged-model" and manifest.merge["merge_into"] == "original"
    assert manifest.base_quantization == "16-bit"
    parity = manifest.parity
    assert parity["prompts"] == 3 and parity["max_new_tokens"] == 6 and parity["positions"] >= 3
    assert parity["top1_agreement"] == pytest.approx(result.parity.top1_agreement)
    assert parity["mean_kl"] == pytest.approx(result.parity.mean_kl) and parity["mean_kl"] >= 0
    assert parity["thresholds"]["min_top1"] == 0.98 and isinstance(parity["passed"], bool)
    assert set(manifest.model_files) >= {"model.safetensors", "config.json", "tokenizer.json"}
    with pytest.raises(ValueError, match="only merge_into='original' applies"):
        merge_adapter(adapter_16bit, tmp_path / "nope", merge_into="dequantized", **QUICK)
    with pytest.raises(ValueError, match="write 'dequantized'"):
        merge_adapter(adapter_16bit, tmp_path / "nope", merge_into="nf4", **QUICK)  # type: ignore[arg-type]
    assert not (tmp_path / "nope").exists()


def test_strict_raises_past_a_threshold_and_writes_nothing(adapter_16bit, tmp_path):
    from loralab.export.merge import merge_adapter

    impossible = ParityThresholds(min_top1=1.01, max_mean_kl=0.0)  # no export can reach a top-1 of 101%
    with pytest.raises(ExportParityError, match=r"drifted from the model as trained: top-1 agreement .* < 1\.01.*"
                                                r"Nothing was written"):
        merge_adapter(adapter_16bit, tmp_path / "strict", strict=True, parity_thresholds=impossible, **QUICK)
    assert not (tmp_path / "strict").exists() and not list(tmp_path.glob(".strict-*"))
    from loralab.export.parity import ExportDriftWarning

    with pytest.warns(ExportDriftWarning, match="top-1 agreement"):
        result = merge_adapter(adapter_16bit, tmp_path / "loud", parity_thresholds=impossible, **QUICK)
    assert not result.parity.passed and read_manifest(tmp_path / "loud").parity["passed"] is False


@pytest.mark.slow  # loads the base in 4-bit through Unsloth
def test_4bit_dequantization_is_what_the_4bit_layers_compute(tiny_base, tmp_path):
    """The NF4 path on real bitsandbytes layers: every Linear4bit written, the dequantized 16-bit model equals
    the 4-bit one (fp32), the merged folder reproduces the adapter on its 4-bit base; 'original' warns."""
    from loralab.export.merge import merge_adapter
    from loralab.export.parity import ExportDriftWarning

    adapter = _adapter(tiny_base, tmp_path / "a4", load_in_4bit=True)
    result = merge_adapter(adapter, tmp_path / "merged", **QUICK)
    assert result.merge_into == "dequantized" and result.base_quantization == "nf4-4bit"
    assert result.dequantized_layers == 2 * 7  # q k v o gate up down in each of 2 layers
    assert result.dequantized_base_max_abs_diff == 0.0, "dequantize_4bit differs from the Linear4bit forward"
    assert result.max_abs_diff_fp32 < 1e-3 * max(1.0, result.adapter_effect)
    assert "4-bit NF4 base" in result.reference
    assert read_manifest(tmp_path / "merged").merge["merge_into"] == "dequantized"
    with pytest.warns(ExportDriftWarning, match="NF4 quantization error"):
        original = merge_adapter(adapter, tmp_path / "original", merge_into="original", parity=False)
    assert original.parity is None and read_manifest(tmp_path / "original").parity is None


def test_model_card_notes_a_4bit_base_and_peft_still_loads_it(adapter_16bit, tiny_base, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from loralab.adapters.save import CARD_TAGS, PEFT_QUANTIZATION_LINE, note_4bit_base

    adapter = shutil.copytree(adapter_16bit, tmp_path / "adapter")
    (adapter / MANIFEST_NAME).unlink()
    note_4bit_base(adapter, {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "org/base")
    note_4bit_base(adapter, {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, "org/base")  # idempotent
    card = (adapter / "README.md").read_text()
    assert card.count(PEFT_QUANTIZATION_LINE) == 1 and "- bnb_4bit_quant_type: nf4" in card
    assert "dequantized NF4 weights" in card and "`org/base`" in card
    assert all(f"- {tag}" in card.split("---")[1] for tag in CARD_TAGS)  # YAML front matter tags

    def load(folder: Path) -> list[str]:
        base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            PeftModel.from_pretrained(base, str(folder))
        return [str(w.message) for w in caught]

    assert not [m for m in load(adapter) if "Unexpected" in m or "adapter" in m.lower()]
    # Why the note is not a key of adapter_config.json: PEFT warns about any key LoraConfig does not know.
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_quantization": "nf4-4bit"}))
    assert [m for m in load(adapter) if "Unexpected keyword arguments ['base_quantization']" in m]
