"""Export: an adapter out of loralab. Merge into its base (+ parity with the model as trained), GGUF through
llama.cpp, an Ollama Modelfile.

    from loralab.export import merge_adapter, export_for_llama_cpp
    merged = merge_adapter("runs/a/adapter", "runs/a/merged")      # checked against the model as trained
    gguf = export_for_llama_cpp("runs/a/adapter", "runs/a/gguf")    # F16 + quantized files, each checked in llama.cpp
"""

from loralab.export.gguf import GGUFExportError, export_gguf, export_gguf_lora
from loralab.export.gguf_export import GGUFExport, export_for_llama_cpp
from loralab.export.merge import GGUF_STATUS, MergeResult, merge_adapter
from loralab.export.ollama import ModelfileError, write_modelfile
from loralab.export.parity import (
    PARITY_THRESHOLDS,
    ExportDriftWarning,
    ExportParityError,
    compare_with_reference,
    record_reference,
)

__all__ = [
    "GGUF_STATUS",
    "PARITY_THRESHOLDS",
    "ExportDriftWarning",
    "ExportParityError",
    "GGUFExport",
    "GGUFExportError",
    "MergeResult",
    "ModelfileError",
    "compare_with_reference",
    "export_for_llama_cpp",
    "export_gguf",
    "export_gguf_lora",
    "merge_adapter",
    "record_reference",
    "write_modelfile",
]
