"""The typed view of a manifest answers "trained on 4-bit?" the way every loader and export reads it."""

from __future__ import annotations

import json

from loralab.adapters.trained_on import TrainedOn, read_trained_on


def test_qlora_and_16bit_manifests():
    qlora = TrainedOn.from_manifest({"base": {"name": "embedded/smollm2-135m-instruct"},
                                     "base_quantization": "nf4-4bit", "training": {"max_seq_length": 256}})
    assert qlora == TrainedOn("embedded/smollm2-135m-instruct", "nf4-4bit", 256)
    assert qlora.load_in_4bit
    lora = TrainedOn.from_manifest({"base": {"name": "b"}, "base_quantization": "16-bit", "training": {}})
    assert not lora.load_in_4bit and lora.max_seq_length is None


def test_no_manifest_or_missing_fields_read_as_16bit():
    for manifest in (None, {}, {"base": {"name": "b"}}, {"base_quantization": None, "training": None}):
        trained = TrainedOn.from_manifest(manifest)
        assert trained.base_quantization == "16-bit" and not trained.load_in_4bit, manifest


def test_read_from_the_adapter_folder(tmp_path):
    assert read_trained_on(tmp_path) is None
    (tmp_path / "loralab_manifest.json").write_text(json.dumps(
        {"base": {"name": "b"}, "base_quantization": "nf4-4bit", "training": {"max_seq_length": 128}}))
    assert read_trained_on(tmp_path) == TrainedOn("b", "nf4-4bit", 128)
