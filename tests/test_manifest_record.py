"""The manifest is one typed record: what ``write`` puts on disk ``read`` gives back; other files are refused."""

from __future__ import annotations

import json

import pytest

from loralab.adapters.manifest import MANIFEST_NAME, BaseRecord, Manifest, ManifestError, read_manifest


def test_qlora_and_16bit_manifests():
    qlora = Manifest(base=BaseRecord(name="embedded/smollm2-135m-instruct"), base_quantization="nf4-4bit",
                     training={"max_seq_length": 256})
    assert qlora.load_in_4bit and qlora.max_seq_length == 256
    lora = Manifest(base=BaseRecord(name="b"), base_quantization="16-bit", training={})
    assert not lora.load_in_4bit and lora.max_seq_length is None
    assert not Manifest(base=BaseRecord()).load_in_4bit  # nothing recorded: a 16-bit base


def test_write_then_read_gives_the_same_record(tmp_path):
    assert read_manifest(tmp_path) is None  # an adapter saved by another tool
    written = Manifest(base=BaseRecord(name="b", weight_files={"model.safetensors": "ab" * 32}),
                       base_quantization="nf4-4bit", training={"max_seq_length": 128, "lora_r": 8},
                       adapter_files={"adapter_model.safetensors": "cd" * 32}, eval={"json_shape": 0.5})
    path = written.write(tmp_path)
    assert path == tmp_path / MANIFEST_NAME
    on_disk = json.loads(path.read_text())  # the field names docs and other tools read
    assert on_disk["manifest_version"] == 2 and on_disk["kind"] == "adapter"
    assert on_disk["base"]["name"] == "b" and on_disk["base_quantization"] == "nf4-4bit"
    assert on_disk["adapter_files"] == {"adapter_model.safetensors": "cd" * 32}
    read = read_manifest(tmp_path)
    assert read == written == Manifest.read(path)
    assert read.load_in_4bit and read.max_seq_length == 128


@pytest.mark.parametrize("text, message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "is not a loralab manifest"),
    (json.dumps({"name": "someone else's file"}), "is not a loralab manifest"),
    (json.dumps({"manifest_version": 9, "base": {}}), "newer than this loralab reads"),
    (json.dumps({"manifest_version": 2, "base": {"name": 3}}), "base.name"),
    (json.dumps({"manifest_version": 2, "base": {}, "adapter_files": {"../../etc/passwd": "ab"}}),
     "not a path inside the adapter folder"),
    (json.dumps({"manifest_version": 2, "base": {}, "lora": {"r": "sixteen"}}), "lora.r"),
    (json.dumps({"manifest_version": 2, "base": {}, "surprise": 1}), "surprise"),
])
def test_a_malformed_or_foreign_file_is_refused_in_one_line(tmp_path, text, message):
    (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(ManifestError, match=message) as error:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST_NAME) in str(error.value) and "\n" not in str(error.value)


def test_a_version_1_manifest_still_reads(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({
        "manifest_version": 1, "base_quantization": "16-bit", "created": "2026-11-01T00:00:00Z",
        "base": {"name": "embedded/smollm2-135m-instruct", "weights_sha256": "ab" * 32, "weight_files": {}},
        "adapter_files": {"adapter_model.safetensors": "cd" * 32}}))
    manifest = read_manifest(tmp_path)
    assert manifest.manifest_version == 1 and manifest.base.weights_sha256 == "ab" * 32
