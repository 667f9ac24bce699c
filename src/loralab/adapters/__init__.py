"""Adapters: what an adapter folder is. Save, manifest, verified loading, the model as trained, hot-swap serving
(merge, parity, GGUF and Ollama are in ``loralab.export``).

Notebook 03's demo helpers stay in their modules, not re-exported here: ``loralab.adapters.train_and_save``
(small adapters trained in one call, the ``caps`` rows) and ``loralab.adapters.perturbed_base`` (look-alike bases)."""

from loralab.adapters.manifest import Manifest, read_manifest, write_manifest
from loralab.adapters.save import as_plain_lora, save_adapter, save_reference_logits
from loralab.adapters.serving import AdapterServer
from loralab.adapters.sft_start import load_sft_for_preference, sft_lineage
from loralab.adapters.verified_loading import check_adapter_base, load_verified_adapter

__all__ = [
    "AdapterServer",
    "Manifest",
    "as_plain_lora",
    "check_adapter_base",
    "load_sft_for_preference",
    "load_verified_adapter",
    "read_manifest",
    "save_adapter",
    "save_reference_logits",
    "sft_lineage",
    "write_manifest",
]
