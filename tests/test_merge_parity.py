"""Merge mechanics and the parity check on the tiny random model (the embedded tokenizer, 2 layers of width 64).

No embedded-model weights load here: the base is random, so these tests check the plumbing (16-bit
adapters merge into the original weights only, NF4 dequantization is what the 4-bit layer computes,
parity lands in the merged folder's manifest, ``strict`` raises and writes nothing, the model card
notes a 4-bit base and PEFT still loads the adapter), and the same for a pre-quantized base (the tiny model
quantized and saved by bitsandbytes, ``tiny_bnb4_base``): merge with parity, "as trained" loading, GGUF export
and the memory the dequantization takes. The numbers on the real model are in ``test_merge_dequantized.py``.
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


# --- A pre-quantized base: a bitsandbytes 4-bit folder (Unsloth's *-bnb-4bit, what the GPU params files name) ---

def _config_folder(root: Path, name: str, quantization: dict | None) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                    **({"quantization_config": quantization} if quantization else {})}))
    return folder


def test_a_base_quantized_other_than_bnb_4bit_is_refused_in_one_line(tmp_path):
    from loralab.export.merge import _resolve_merge_into
    from loralab.model.prequantized import prequantized_4bit

    assert prequantized_4bit(_config_folder(tmp_path, "plain", None)) is False
    assert prequantized_4bit(_config_folder(tmp_path, "bnb4", {"quant_method": "bitsandbytes", "load_in_4bit": True}))
    with pytest.raises(ValueError, match=r"quantized \(bitsandbytes 8-bit\): loralab merges and exports from a 16-bit"):
        prequantized_4bit(_config_folder(tmp_path, "bnb8", {"quant_method": "bitsandbytes", "load_in_8bit": True}))
    with pytest.raises(ValueError, match=r"quantized \(gptq\)"):
        prequantized_4bit(_config_folder(tmp_path, "gptq", {"quant_method": "gptq", "bits": 4}))
    # a pre-quantized base holds only NF4 weights: whatever the manifest says, the merge is into those
    from loralab.adapters.manifest import Manifest

    manifest_16bit = Manifest.model_construct(base_quantization="16-bit")
    assert _resolve_merge_into(None, manifest_16bit, tmp_path, prequantized="org/m-bnb-4bit") == "dequantized"
    with pytest.raises(ValueError, match="holds no original 16-bit weights"):
        _resolve_merge_into("original", None, tmp_path, prequantized="org/m-bnb-4bit")


@pytest.fixture(scope="module")
def bnb4_adapter(tiny_bnb4_base, tmp_path_factory) -> Path:
    """A random LoRA on the pre-quantized tiny base (PEFT on its Linear4bit layers), saved with a QLoRA manifest."""
    return _adapter(tiny_bnb4_base, tmp_path_factory.mktemp("abnb4") / "adapter", load_in_4bit=True)


@pytest.fixture(scope="module")
def bnb4_merge(bnb4_adapter, tmp_path_factory):
    from loralab.export.merge import merge_adapter

    return merge_adapter(bnb4_adapter, tmp_path_factory.mktemp("mbnb4") / "merged", **QUICK)


@pytest.mark.slow  # loads the pre-quantized base
def test_prequantized_base_merges_into_its_own_nf4_weights_with_parity(bnb4_adapter, bnb4_merge, tmp_path):
    import torch
    from safetensors import safe_open

    from loralab.export.merge import merge_adapter

    result = bnb4_merge
    assert result.merge_into == "dequantized" and result.base_quantization == "nf4-4bit"
    assert result.dequantized_layers == 2 * 7
    # float32 dequantization is what the 4-bit layer computes at float32 (bf16, the quant state's dtype, is not)
    assert result.dequantized_base_max_abs_diff == 0.0
    assert result.max_abs_diff_fp32 < 1e-3 * max(1.0, result.adapter_effect), vars(result)
    assert result.parity.passed and result.parity.top1_agreement >= 0.98, result.parity.summary()
    config = json.loads((result.path / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "bfloat16"  # a plain 16-bit folder
    with safe_open(str(result.path / "model.safetensors"), "pt") as weights:
        q_proj = weights.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert q_proj.dtype == torch.bfloat16 and tuple(q_proj.shape) == (64, 64)
    manifest = read_manifest(result.path)
    assert manifest.merge["merge_into"] == "dequantized" and manifest.parity["passed"] is True
    with pytest.raises(ValueError, match="pre-quantized .* holds no original 16-bit weights"):
        merge_adapter(bnb4_adapter, tmp_path / "original", merge_into="original", **QUICK)
    assert not (tmp_path / "original").exists()


@pytest.mark.slow  # loads the pre-quantized base
def test_prequantized_base_loads_as_trained_from_its_own_4bit_weights(bnb4_adapter, bnb4_merge, tiny_bnb4_base):
    import bitsandbytes as bnb
    import torch
    from safetensors import safe_open

    from loralab.adapters.as_trained import load_as_trained
    from loralab.export.parity import compare_with_reference

    model, tokenizer = load_as_trained(bnb4_adapter)
    layer = model.get_submodule("base_model.model.model.layers.0.self_attn.q_proj").base_layer
    assert isinstance(layer, bnb.nn.Linear4bit) and layer.compute_dtype == torch.float32  # the folder says bf16
    with safe_open(str(tiny_bnb4_base / "model.safetensors"), "pt") as weights:
        packed = weights.get_tensor("model.layers.0.self_attn.q_proj.weight")
    assert torch.equal(layer.weight.data.view(-1), packed.view(-1))  # the folder's own NF4 codes
    report = compare_with_reference(bnb4_merge.parity_reference, model, "merged-16bit", tokenizer=tokenizer)
    assert report.greedy_agreement == 1.0 and report.max_kl < 1e-9, report.summary()


@pytest.mark.slow  # converts and runs GGUF files in llama.cpp
def test_prequantized_base_exports_to_gguf_merged_and_as_a_gguf_lora(bnb4_merge, tmp_path):
    from loralab.export.gguf_export import export_for_llama_cpp

    export = export_for_llama_cpp(bnb4_merge, tmp_path / "gguf", out_types=(), lora=True, modelfile=False)
    assert [f.format for f in export.files] == ["gguf-f16", "gguf-lora-f16"]
    for entry in export.files:  # each run in llama.cpp against the model as trained (the 4-bit base + adapter)
        assert entry.parity.passed and entry.parity.mean_kl < 1e-2, entry.summary()
    assert export.files[0].tensor_types.get("F16", 0) >= 2 * 7


MEMORY_PROBE = r"""
import ctypes, gc, json, sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, LlamaConfig

from loralab.model.prequantized import load_dequantized


def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024


def settle():
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


root = Path(sys.argv[1])
config = LlamaConfig(hidden_size=512, intermediate_size=2048, num_hidden_layers=4, num_attention_heads=8,
                     num_key_value_heads=8, vocab_size=1024, tie_word_embeddings=True)
torch.manual_seed(0)
AutoModelForCausalLM.from_config(config).to(torch.bfloat16).save_pretrained(root / "16bit")
quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True)
AutoModelForCausalLM.from_pretrained(root / "16bit", quantization_config=quantization).save_pretrained(root / "bnb4")
settle()
baseline = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # the peak-RSS counter (VmHWM) starts again from here
model, layers = load_dequantized(root / "bnb4", torch.float32)
settle()
print("RESULT " + json.dumps({"baseline": baseline, "peak": status("VmHWM"), "after": status("VmRSS"), "layers": layers,
                              "float_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}))
"""


@pytest.mark.slow  # builds, quantizes and dequantizes a 17M-weight model in a child process
def test_dequantizing_a_prequantized_base_peaks_at_the_float_model(tmp_path):
    """Layer by layer: the peak RSS while loading and dequantizing is the float32 model plus the 4-bit file and one
    layer (measured 1.16x the float32 weights), never a second float copy (2x)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["layers"] == 4 * 7
    peak, kept = result["peak"] - result["baseline"], result["after"] - result["baseline"]
    assert kept > 0.9 * result["float_bytes"], result  # the measurement sees the float model
    assert peak < 1.3 * result["float_bytes"], result
