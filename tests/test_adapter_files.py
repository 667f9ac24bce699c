"""Corrupted, truncated or pickle-only adapter files are refused with a clear error before any model loads.

The adapter is a real PEFT LoRA saved from a tiny random Llama (no embedded model needed).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from loralab.adapters.manifest import MANIFEST_NAME, BaseRecord, Manifest
from loralab.adapters.verified_loading import (
    AdapterFileError,
    check_adapter_base,
    load_verified_adapter,
    verify_adapter_files,
)
from loralab.model.fingerprints import file_sha256


@pytest.fixture(scope="module")
def good_adapter(tmp_path_factory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                init_lora_weights=False))
    folder = tmp_path_factory.mktemp("adapters") / "good"
    model.save_pretrained(str(folder), safe_serialization=True)
    weights = folder / "adapter_model.safetensors"
    # A version-1 manifest (only the weights listed) with a base written by hand: no real base needed.
    Manifest(manifest_version=1, base=BaseRecord(name="org/tiny-llama"),
             adapter_files={weights.name: file_sha256(weights, use_cache=False)}).write(folder)
    return folder


def _copy(good: Path, tmp_path: Path) -> Path:
    target = tmp_path / "adapter"
    shutil.copytree(good, target)
    return target


def test_a_good_adapter_passes(good_adapter):
    assert verify_adapter_files(good_adapter).name == "adapter_model.safetensors"


@pytest.mark.parametrize("keep", [0.5, 0.99, 20 / 6000, 0.0])
def test_truncated_file_is_refused_naming_it(good_adapter, tmp_path, keep):
    adapter = _copy(good_adapter, tmp_path)
    weights = adapter / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(AdapterFileError, match=r"adapter_model\.safetensors \(\d+ bytes\) is corrupted or truncated.*"
                                                r"re-save the adapter"):
        verify_adapter_files(adapter)


def test_garbage_bytes_are_refused(good_adapter, tmp_path):
    adapter = _copy(good_adapter, tmp_path)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(os.urandom(weights.stat().st_size))
    with pytest.raises(AdapterFileError, match="corrupted or truncated"):
        verify_adapter_files(adapter)


def test_bytes_changed_in_place_differ_from_the_manifest(good_adapter, tmp_path):
    """Same size, header intact, one byte of tensor data flipped: only the recorded SHA-256 can tell."""
    adapter = _copy(good_adapter, tmp_path)
    weights = adapter / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x01  # low mantissa bit of the last fp32 value: still a finite number
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterFileError, match="differs from the file the manifest recorded"):
        verify_adapter_files(adapter)
    (adapter / MANIFEST_NAME).unlink()  # without a manifest there is nothing to compare: it loads
    verify_adapter_files(adapter)


def test_nan_weights_are_refused(good_adapter, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    adapter = _copy(good_adapter, tmp_path)
    (adapter / MANIFEST_NAME).unlink()
    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    name = min(tensors)
    tensors[name][0, 0] = float("nan")
    save_file(tensors, str(weights))
    with pytest.raises(AdapterFileError, match=rf"tensor '{name}' holds NaN or inf"):
        verify_adapter_files(adapter)
    assert torch.isnan(load_file(str(weights))[name]).any()


@pytest.mark.parametrize("text, message", [("{not json", "is corrupted \\(not JSON"), ("[1, 2]", "is not a PEFT adapter"),
                                           ('{"r": 4}', "is not a PEFT adapter")])
def test_broken_adapter_config_is_refused(good_adapter, tmp_path, text, message):
    adapter = _copy(good_adapter, tmp_path)
    (adapter / "adapter_config.json").write_text(text)
    with pytest.raises(AdapterFileError, match=rf"adapter_config\.json {message}"):
        verify_adapter_files(adapter)


def test_pickle_only_adapter_is_refused(good_adapter, tmp_path):
    adapter = _copy(good_adapter, tmp_path)
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(ValueError, match=r"adapter_model\.bin but no adapter_model\.safetensors.*pickle"):
        verify_adapter_files(adapter)


def test_loading_paths_check_files_before_anything_else(good_adapter, tmp_path):
    """check_adapter_base / load_verified_adapter fail on the file before fingerprinting or loading a base."""
    adapter = _copy(good_adapter, tmp_path)
    weights = adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AdapterFileError, match="truncated"):
        check_adapter_base(adapter, base_model="org/not-available-here")
    with pytest.raises(AdapterFileError, match="truncated"):
        load_verified_adapter(adapter, base_model="org/not-available-here")
