"""Manifest and verified-loading checks that need no model: small fake base folders on disk.

A fake base is a folder with a safetensors file, tokenizer files and a chat template, like a real
Hugging Face model folder; changing one weight byte, the tokenizer or the template must be refused
by ``check_adapter_base`` before anything loads. The same checks on the real embedded model run in
``test_adapters_models.py``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest

from loralab.adapters.manifest import MANIFEST_NAME, read_manifest, write_manifest
from loralab.adapters.verified_loading import (
    AdapterFileError,
    AdapterFileWarning,
    BaseMismatchWarning,
    check_adapter_base,
    load_verified_adapter,
    require_safetensors,
    verify_adapter_files,
)
from loralab.model.fingerprints import base_fingerprint, dataset_sha256, file_sha256
from loralab.params.adapters_demo import validate_demo_params
from loralab.params.errors import ParamsError
from loralab.params.run_config import validate_params

ADAPTER_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Fingerprint cache in a temporary folder, so tests neither read nor write the user's cache."""
    monkeypatch.setenv("LORALAB_CACHE", str(tmp_path / "cache"))


def make_base(folder: Path, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    save_file({"layer.weight": torch.randn(16, 8, generator=generator), "norm": torch.ones(8)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>", "model_max_length": 8192}))
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    return folder


def make_adapter(folder: Path, base: Path, cfg_overrides: dict | None = None) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["v_proj", "q_proj"],
        "peft_type": "LORA", "base_model_name_or_path": str(base), "bias": "none"}))
    save_file({"lora_A": torch.zeros(4, 8)}, str(folder / "adapter_model.safetensors"))
    for name in ADAPTER_TOKENIZER_FILES:  # save_adapter saves the tokenizer next to the adapter
        shutil.copy(base / name, folder / name)
    (folder / "README.md").write_text("---\nlibrary_name: peft\n---\n")
    cfg = validate_params({"model_name": str(base), "load_in_4bit": False, "lora_r": 4, "lora_alpha": 8,
                           **(cfg_overrides or {})})
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "HI!"}]}]
    write_manifest(folder, cfg, dataset_rows=rows, eval_scores={"shape_score": 0.75})
    return folder


@pytest.fixture()
def base_and_adapter(tmp_path) -> tuple[Path, Path]:
    base = make_base(tmp_path / "base")
    return base, make_adapter(tmp_path / "adapter", base)


def test_manifest_round_trip(base_and_adapter):
    base, adapter = base_and_adapter
    manifest = read_manifest(adapter)
    assert manifest is not None and (adapter / MANIFEST_NAME).is_file()
    fp = base_fingerprint(str(base))
    assert manifest.base.weights_sha256 == fp.weights_sha256
    assert manifest.base.weight_files == {"model.safetensors": file_sha256(base / "model.safetensors")}
    assert manifest.base.tokenizer_sha256 == fp.tokenizer_sha256 is not None
    assert manifest.base.chat_template_sha256 == fp.chat_template_sha256 is not None
    assert manifest.lora.r == 4 and manifest.lora.lora_alpha == 8
    assert manifest.lora.scale == pytest.approx(2.0)
    assert manifest.lora.target_modules == ["q_proj", "v_proj"]
    assert manifest.base_quantization == "16-bit" and not manifest.load_in_4bit
    assert manifest.training["lora_r"] == 4
    assert manifest.dataset.rows == 1 and len(manifest.dataset.sha256) == 64
    assert manifest.eval == {"shape_score": 0.75}
    assert manifest.versions["torch"] and manifest.versions["peft"]
    assert manifest.adapter_files == {name: file_sha256(adapter / name, use_cache=False) for name in (
        "adapter_config.json", "adapter_model.safetensors", "README.md", *ADAPTER_TOKENIZER_FILES)}
    on_disk = json.loads((adapter / MANIFEST_NAME).read_text())  # the names docs/run-folder.md and tools read
    assert on_disk["base"]["weights_sha256"] == fp.weights_sha256 and on_disk["lora"]["scale"] == pytest.approx(2.0)
    assert on_disk["dataset"]["sha256"] == manifest.dataset.sha256 and on_disk["kind"] == "adapter"
    assert manifest.base.differences(fp) == []
    check = check_adapter_base(adapter)  # base taken from the manifest
    assert check.verified and check.base_model == str(base)


def test_weights_digest_is_sha256_of_the_file_bytes(tmp_path):
    import hashlib

    base = make_base(tmp_path / "base")
    expected = hashlib.sha256((base / "model.safetensors").read_bytes()).hexdigest()
    assert file_sha256(base / "model.safetensors", use_cache=False) == expected
    assert file_sha256(base / "model.safetensors") == expected  # first call fills the cache
    assert file_sha256(base / "model.safetensors") == expected  # second call reads it


def test_rewritten_file_is_hashed_again(tmp_path):
    """The cache key holds size and mtime: a file rewritten in place must not keep its old digest."""
    import os

    base = make_base(tmp_path / "base")
    path = base / "model.safetensors"
    before = file_sha256(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert file_sha256(path) != before


def flip_last_weight_byte(path: Path) -> None:
    """Change one byte in the tensor data (the end of a safetensors file is data, not header)."""
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))


def copy_base(base: Path, target: Path) -> Path:
    shutil.copytree(base, target)
    return target


def test_changed_weight_is_refused(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    other = copy_base(base, tmp_path / "other")
    assert check_adapter_base(adapter, str(other)).verified  # an identical copy is the same base
    flip_last_weight_byte(other / "model.safetensors")
    with pytest.raises(ValueError, match=r"weights .*model\.safetensors"):
        check_adapter_base(adapter, str(other))


def test_changed_tokenizer_is_refused(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    other = copy_base(base, tmp_path / "other")
    (other / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "c": 1}}}))
    with pytest.raises(ValueError, match="tokenizer files") as error:
        check_adapter_base(adapter, str(other))
    assert "chat template" not in str(error.value) and "weights" not in str(error.value)


def test_changed_special_token_is_refused(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    other = copy_base(base, tmp_path / "other")
    (other / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>", "model_max_length": 8192}))
    with pytest.raises(ValueError, match="tokenizer files"):
        check_adapter_base(adapter, str(other))


def test_changed_chat_template_is_refused(base_and_adapter, tmp_path):
    base, adapter = base_and_adapter
    other = copy_base(base, tmp_path / "other")
    (other / "chat_template.jinja").write_text(TEMPLATE.replace("<|im_start|>", "<|start|>"))
    with pytest.raises(ValueError, match="chat template") as error:
        check_adapter_base(adapter, str(other))
    assert "tokenizer files" not in str(error.value), "the template alone changed"
    assert "allow_base_mismatch=True" in str(error.value), "the message names the override"


def test_template_in_tokenizer_config_counts_too(tmp_path):
    """Older folders keep the template inside tokenizer_config.json; it is fingerprinted from there."""
    base = make_base(tmp_path / "base")
    (base / "chat_template.jinja").unlink()
    config = json.loads((base / "tokenizer_config.json").read_text())
    (base / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TEMPLATE}))
    fp = base_fingerprint(str(base))
    (base / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": TEMPLATE + " "}))
    fp2 = base_fingerprint(str(base))
    assert fp.chat_template_sha256 != fp2.chat_template_sha256
    assert fp.tokenizer_sha256 == fp2.tokenizer_sha256


def test_unchanged_adapter_folder_passes_without_a_warning(base_and_adapter):
    _, adapter = base_and_adapter
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert verify_adapter_files(adapter).name == "adapter_model.safetensors"
        assert check_adapter_base(adapter).verified


def test_edited_lora_alpha_is_refused_before_any_model_loads(base_and_adapter):
    """lora_alpha 8 -> 16 doubles the adapter's scale: a valid config, so only the recorded SHA-256 tells."""
    _, adapter = base_and_adapter
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "lora_alpha": 16}))
    message = r"adapter_config\.json differs from the file the manifest recorded.*lora_alpha.*re-save the adapter"
    with pytest.raises(AdapterFileError, match=message):
        verify_adapter_files(adapter)
    with pytest.raises(AdapterFileError, match=r"adapter_config\.json"):
        check_adapter_base(adapter)  # before the base is fingerprinted
    with pytest.raises(AdapterFileError, match=r"adapter_config\.json"):
        load_verified_adapter(adapter)  # the fake base cannot load: the refusal comes first


def test_deleted_tokenizer_config_is_refused(base_and_adapter):
    _, adapter = base_and_adapter
    (adapter / "tokenizer_config.json").unlink()
    with pytest.raises(AdapterFileError, match=r"tokenizer_config\.json is missing.*copy / download it again"):
        check_adapter_base(adapter)


@pytest.mark.parametrize("name", ["tokenizer.json", "chat_template.jinja", "README.md"])
def test_any_recorded_file_that_changed_is_refused(base_and_adapter, name):
    _, adapter = base_and_adapter
    with open(adapter / name, "a") as handle:
        handle.write(" ")
    with pytest.raises(AdapterFileError, match=rf"{name.replace('.', '[.]')} differs from the file the manifest"):
        verify_adapter_files(adapter)


def test_a_file_added_later_warns_naming_it(base_and_adapter):
    _, adapter = base_and_adapter
    (adapter / "notes.txt").write_text("tried alpha 16")
    with pytest.warns(AdapterFileWarning, match=r"notes\.txt, which the manifest does not know"):
        check = check_adapter_base(adapter)
    assert check.verified, "an unknown file is reported, not refused"


def test_version_1_manifest_checks_only_what_it_lists(base_and_adapter):
    """Older manifests recorded only adapter_model*: those are checked, other files are neither checked nor
    reported as unknown."""
    _, adapter = base_and_adapter
    manifest = read_manifest(adapter)
    weights = "adapter_model.safetensors"
    manifest.model_copy(update={"manifest_version": 1,
                                "adapter_files": {weights: manifest.adapter_files[weights]}}).write(adapter)
    (adapter / "tokenizer_config.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_adapter_base(adapter).verified
    flip_last_weight_byte(adapter / weights)
    with pytest.raises(AdapterFileError, match=r"adapter_model\.safetensors differs from the file the manifest"):
        verify_adapter_files(adapter)


def test_override_loads_with_a_warning(base_and_adapter, tmp_path):
    _, adapter = base_and_adapter
    other = make_base(tmp_path / "other", seed=1)
    with pytest.warns(BaseMismatchWarning, match="allow_base_mismatch"):
        check = check_adapter_base(adapter, str(other), allow_base_mismatch=True)
    assert not check.verified and any("weights" in d for d in check.differences)


def test_missing_manifest_warns(base_and_adapter):
    base, adapter = base_and_adapter
    (adapter / MANIFEST_NAME).unlink()
    with pytest.warns(BaseMismatchWarning, match="no loralab_manifest.json"):
        check = check_adapter_base(adapter)  # base from adapter_config.json
    assert check.manifest is None and not check.verified and check.base_model == str(base)


def test_pickle_adapter_is_refused(base_and_adapter):
    _, adapter = base_and_adapter
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(ValueError, match="only safetensors"):
        require_safetensors(adapter)
    with pytest.raises(ValueError, match="not a PEFT adapter folder"):
        require_safetensors(adapter.parent)


def test_broken_manifest_says_what_to_do(base_and_adapter):
    _, adapter = base_and_adapter
    (adapter / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="delete it"):
        read_manifest(adapter)


def test_4bit_vs_16bit_base_is_a_note_not_a_refusal(tmp_path):
    base = make_base(tmp_path / "base")
    adapter = make_adapter(tmp_path / "adapter", base, {"load_in_4bit": True})
    assert read_manifest(adapter).base_quantization == "nf4-4bit"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = check_adapter_base(adapter, load_in_4bit=False)
    assert check.verified and check.notes and "4-bit" in check.notes[0]


def test_dataset_fingerprint_sees_order_and_content():
    a = {"messages": [{"role": "user", "content": "x"}]}
    b = {"messages": [{"role": "user", "content": "y"}]}
    assert dataset_sha256([a, b]) != dataset_sha256([b, a])
    assert dataset_sha256([a, b]) == dataset_sha256([dict(a), dict(b)])


def test_demo_params_validate():
    demo = validate_demo_params({"max_steps": 3, "adapter_dirs": {"json": "/x"}})
    assert demo.train_config().max_steps == 3 and not demo.train_config().load_in_4bit
    with pytest.raises(ParamsError, match="Did you mean 'max_steps'"):
        validate_demo_params({"max_step": 3})
    with pytest.raises(ParamsError, match="max_steps"):
        validate_demo_params({"max_steps": 0})
    with pytest.raises(ParamsError, match="simple name"):
        validate_demo_params({"adapter_dirs": {"my adapter": "/x"}})
    assert demo.merge_options() == {"merge_into": None, "parity": True, "parity_prompts_n": 8, "parity_new_tokens": 24}
    assert validate_demo_params({"merge_parity_prompts": 0, "merge_into": "original"}).merge_options()["parity"] is False
    with pytest.raises(ParamsError, match="merge_into"):
        validate_demo_params({"merge_into": "nf4"})


def test_perturbed_bases_are_refused(base_and_adapter):
    """The look-alike bases notebook 03 shows: one value changed by one ulp, or a changed chat template."""
    from safetensors.torch import load_file

    from loralab.adapters.perturbed_base import base_with_changed_template, base_with_one_weight_changed

    base, adapter = base_and_adapter
    with base_with_one_weight_changed(str(base)) as other:
        original, changed = load_file(str(base / "model.safetensors")), load_file(str(other / "model.safetensors"))
        differing = {k: int((original[k] != changed[k]).sum()) for k in original}
        assert sorted(differing.values()) == [0, 1], differing  # exactly one value in one tensor
        with pytest.raises(ValueError, match="weights"):
            check_adapter_base(adapter, str(other))
    with base_with_changed_template(str(base), new_template="{{ messages }}") as other, \
            pytest.raises(ValueError, match="chat template"):
        check_adapter_base(adapter, str(other))
    assert check_adapter_base(adapter, str(base)).verified  # the original is untouched


def test_notebook_03_takes_a_shipped_params_file_by_name(capsys):
    """params_file in notebook 03's cell picks params/03_adapters/<name>, whose values replace the cell's."""
    from loralab.params.adapters_demo import AdaptersDemoConfig
    from loralab.runs.notebook_params import notebook_params

    cell = {"params_file": "colab_t4.yaml", "model_name": "embedded/smollm2-135m-instruct", "max_steps": 6}
    demo = notebook_params(cell, set(), schema=AdaptersDemoConfig)
    assert demo.model_name == "unsloth/Llama-3.2-1B-Instruct-bnb-4bit" and demo.load_in_4bit and demo.max_steps == 40
    assert "params/03_adapters/colab_t4.yaml" in capsys.readouterr().out
    with pytest.raises(ParamsError, match=r"nor a shipped params file of this notebook \(colab_t4.yaml\)"):
        notebook_params({"params_file": "t4.yaml"}, set(), schema=AdaptersDemoConfig)
