"""Adapters: what an adapter folder is. Save, manifest, verified loading, the model as trained, hot-swap serving,
look-alike bases (merge, parity, GGUF and Ollama are in ``loralab.export``)."""

from loralab.adapters.manifest import dataset_sha256, read_manifest, write_manifest
from loralab.adapters.perturbed_base import base_with_changed_template, base_with_one_weight_changed
from loralab.adapters.save import save_adapter, save_reference_logits
from loralab.adapters.serving import AdapterServer
from loralab.adapters.sft_start import load_sft_for_preference, sft_lineage
from loralab.adapters.train_and_save import caps_rows, train_adapter
from loralab.adapters.verified_loading import check_adapter_base, load_verified_adapter

__all__ = [
    "AdapterServer",
    "base_with_changed_template",
    "base_with_one_weight_changed",
    "caps_rows",
    "check_adapter_base",
    "dataset_sha256",
    "load_sft_for_preference",
    "load_verified_adapter",
    "read_manifest",
    "save_adapter",
    "save_reference_logits",
    "sft_lineage",
    "train_adapter",
    "write_manifest",
]
