"""A QLoRA adapter merged into the dequantized NF4 weights reproduces the trained model; into the 16-bit ones, not.

One small adapter is trained on the tiny random model's 4-bit base with notebook 03's settings (6 steps,
r=8, learning rate 3e-3), then merged both ways. Both merged folders are compared with the model as
trained (the adapter on its own 4-bit base) by the parity check merge_adapter runs by default: 8
held-out questions x 16 new tokens, fp32.

The dequantized merge is then exported for llama.cpp (F16, Q4_K_M, the adapter as a GGUF LoRA, a
Modelfile) and every file is run in llama.cpp against the same reference and scored on the embedded
task. These are the mechanics, on random weights (near-tied logits: a greedy pick may flip, so the checks
are on KL and top-1). What the real model's adapter keeps through each merge and format is measured by
`bench/export_table.py runs/<run>/adapter` on `make run`'s adapter, and tabled in docs/adapters.md (the
dequantized merge 8/8 greedy identical, mean KL 1.3e-5; the 16-bit merge 3/8, 4.9e-2; F16 to Q4_K_M).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

from conftest import TINY_MODEL

pytestmark = pytest.mark.slow
PARITY = {"parity_prompts_n": 8, "parity_new_tokens": 16}


@pytest.fixture(scope="module")
def qlora_adapter(tmp_path_factory) -> Path:
    from loralab.adapters.train_and_save import train_adapter
    from loralab.data.chat_rows import load_chat_rows
    from loralab.params.adapters_demo import validate_demo_params

    cfg = validate_demo_params({"load_in_4bit": True, "model_name": TINY_MODEL}).train_config()
    out = tmp_path_factory.mktemp("qlora")
    return train_adapter(cfg, load_chat_rows("embedded/json-answers"), out / "json", "json",
                         reference_logits=False).path


@pytest.fixture(scope="module")
def merges(qlora_adapter, tmp_path_factory):
    from loralab.export.merge import merge_adapter

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
    assert dequantized.dequantized_layers == 2 * 7
    assert dequantized.dequantized_base_max_abs_diff == 0.0  # dequantize_4bit is what Linear4bit computes
    assert dequantized.max_abs_diff_fp32 < 1e-3 * dequantized.adapter_effect, vars(dequantized)
    parity = dequantized.parity  # random weights: near-tied logits may flip a greedy pick, so KL and top-1
    assert parity.top1_agreement >= 0.95 and parity.mean_kl < 1e-3, parity.summary()


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
        assert manifest.kind == "merged-model" and manifest.base_quantization == "nf4-4bit"
        assert manifest.merge["merge_into"] == result.merge_into
        assert manifest.merged_from.adapter_dir == str(Path(qlora_adapter).resolve())
        parity = manifest.parity
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
    assert "README.md" in read_manifest(qlora_adapter).adapter_files
    config = json.loads((Path(qlora_adapter) / "adapter_config.json").read_text())
    assert "base_quantization" not in config  # PEFT's own file stays as PEFT wrote it
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(TINY_MODEL),
                                                dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, str(qlora_adapter))
    assert "default" in model.peft_config
    assert not [w for w in caught if "Unexpected" in str(w.message)], [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def gguf_export(merges, tmp_path_factory):
    """The dequantized merge as F16 + Q4_K_M GGUF files, the adapter as a GGUF LoRA, and a Modelfile."""
    from loralab.eval.token_model_scores import embedded_task_scores
    from loralab.export.gguf_export import export_for_llama_cpp

    export = export_for_llama_cpp(merges[0], tmp_path_factory.mktemp("gguf") / "gguf", out_types=("q4_k_m",),
                                  lora=True, score=embedded_task_scores)
    print(f"\n{export.summary()}")
    return export


def test_gguf_files_run_in_llama_cpp_like_the_trained_model(gguf_export, merges):
    """Each file is run in llama.cpp itself and compared with the model as trained (the merge's reference)."""
    by_format = {f.format: f for f in gguf_export.files}
    assert list(by_format) == ["gguf-f16", "gguf-q4_k_m", "gguf-lora-f16"]
    for entry in gguf_export.files:
        assert entry.parity is not None and isinstance(entry.parity.passed, bool), entry.summary()
        assert entry.parity.prompts == 8 and entry.parity.max_new_tokens == 16
    f16, q4 = by_format["gguf-f16"], by_format["gguf-q4_k_m"]
    assert f16.parity.top1_agreement >= 0.9 and f16.parity.mean_kl < 1e-2, f16.summary()
    assert f16.tensor_types.get("F16", 0) >= 2 * 7
    # the tiny model's 64-wide rows take llama.cpp's fallbacks (Q5_0, Q8_0); its 256-wide down_proj takes Q4_K
    assert q4.tensor_types.get("Q4_K", 0) > 0 and q4.bytes < 0.7 * f16.bytes, q4.summary()
    assert q4.parity.mean_kl > f16.parity.mean_kl  # quantization costs something, and parity sees it
    # each file is scored on the embedded task in llama.cpp (random weights: the scores say nothing here)
    assert set(f16.scores) == set(q4.scores) and "json_shape" in f16.scores, (f16.scores, q4.scores)


def test_gguf_lora_on_its_base_matches_the_merged_gguf(gguf_export):
    """base.F16.gguf (the dequantized NF4 weights) + adapter.F16.gguf in llama.cpp = the merge; the base alone is not."""
    from loralab.export.gguf_runtime import LlamaCppTokenModel
    from loralab.export.parity import compare_with_reference

    lora = next(f for f in gguf_export.files if f.kind == "lora")
    merged = next(f for f in gguf_export.files if f.format == "gguf-f16")
    assert lora.lora_path.name == "adapter.F16.gguf" and lora.path.name == "base.F16.gguf"
    assert abs(lora.parity.mean_kl - merged.parity.mean_kl) < 1e-3, (lora.summary(), merged.summary())
    assert set(lora.scores) == set(merged.scores)
    base_only = LlamaCppTokenModel(lora.path)
    reference = gguf_export.reference
    report = compare_with_reference(reference, base_only, "gguf-lora-f16")
    base_only.close()
    assert not report.passed, report.summary()  # without the adapter the check fails, loudly


def test_gguf_manifest_and_modelfile(gguf_export, merges):
    from loralab.adapters.manifest import read_manifest

    folder = gguf_export.folder
    manifest = json.loads((folder / "loralab_manifest.json").read_text())
    assert manifest["kind"] == "gguf-export" and manifest["merge_into"] == "dequantized"
    assert read_manifest(folder).base == read_manifest(merges[0].path).base  # the base it all came from
    assert [f["format"] for f in manifest["files"]] == ["gguf-f16", "gguf-q4_k_m", "gguf-lora-f16"]
    assert manifest["files"][1]["parity"]["top1_agreement"] == pytest.approx(gguf_export.files[1].parity.top1_agreement)
    text = (folder / "Modelfile").read_text()
    assert "FROM ./model.Q4_K_M.gguf" in text and "<|im_end|>" in text
    assert gguf_export.modelfile.checked_conversations >= 3
    assert not list(folder.parent.glob(".*partial"))
    umask = os.umask(0)
    os.umask(umask)
    assert (folder / "model.Q4_K_M.gguf").stat().st_mode & 0o777 == 0o666 & ~umask  # readable by a server
