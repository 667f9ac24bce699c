"""Adapters: save, manifest, verified loading, merge (+ parity), GGUF + Ollama, hot-swap serving, look-alike bases."""

from loralab.adapters.gguf import GGUFExportError, export_gguf, export_gguf_lora
from loralab.adapters.gguf_export import GGUFExport, export_for_llama_cpp
from loralab.adapters.manifest import dataset_sha256, read_manifest, write_manifest
from loralab.adapters.merge import GGUF_STATUS, MergeResult, merge_adapter
from loralab.adapters.ollama import ModelfileError, write_modelfile
from loralab.adapters.parity import (
    PARITY_THRESHOLDS,
    ExportDriftWarning,
    ExportParityError,
    compare_with_reference,
    record_reference,
)
from loralab.adapters.perturbed_base import base_with_changed_template, base_with_one_weight_changed
from loralab.adapters.save import save_adapter, save_reference_logits
from loralab.adapters.serving import AdapterServer
from loralab.adapters.sft_start import load_sft_for_preference, sft_lineage
from loralab.adapters.train_and_save import caps_rows, train_adapter
from loralab.adapters.verified_loading import check_adapter_base, load_verified_adapter

__all__ = [
    "GGUF_STATUS",
    "PARITY_THRESHOLDS",
    "AdapterServer",
    "ExportDriftWarning",
    "ExportParityError",
    "GGUFExport",
    "GGUFExportError",
    "MergeResult",
    "ModelfileError",
    "base_with_changed_template",
    "base_with_one_weight_changed",
    "caps_rows",
    "check_adapter_base",
    "compare_with_reference",
    "dataset_sha256",
    "export_for_llama_cpp",
    "export_gguf",
    "export_gguf_lora",
    "load_sft_for_preference",
    "load_verified_adapter",
    "merge_adapter",
    "read_manifest",
    "record_reference",
    "save_adapter",
    "save_reference_logits",
    "sft_lineage",
    "train_adapter",
    "write_manifest",
    "write_modelfile",
]
