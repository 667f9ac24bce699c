"""What an adapter was trained on, typed: the fields of ``loralab_manifest.json`` that loaders and exports branch on.

    from loralab.adapters.trained_on import TrainedOn, read_trained_on
    trained = read_trained_on("runs/a/adapter")       # None when the folder has no manifest
    trained.load_in_4bit                                # True for a QLoRA adapter (base_quantization "nf4-4bit")
    trained.max_seq_length                              # its training sequence length, None if not recorded
    TrainedOn.from_manifest(check.manifest)             # from a dict already read; None -> a 16-bit default

An adapter without a manifest reads as trained on a 16-bit base (what loading it without one assumes).
The full record stays a dict (``loralab.adapters.manifest.read_manifest``); this is the part code decides on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loralab.adapters.manifest import read_manifest


@dataclass(frozen=True)
class TrainedOn:
    """The base an adapter was trained against, as its manifest records it."""

    base_name: str | None = None  # the base's name or path (``base.name``); None without a manifest
    base_quantization: str = "16-bit"  # "nf4-4bit" for a QLoRA adapter, "16-bit" otherwise
    max_seq_length: int | None = None  # ``training.max_seq_length``; None when not recorded

    @property
    def load_in_4bit(self) -> bool:
        """True when the adapter was trained on the 4-bit NF4 base (QLoRA)."""
        return self.base_quantization.startswith("nf4")

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any] | None) -> TrainedOn:
        """Read the fields from a manifest dict (``None``, no manifest: a 16-bit base, nothing recorded)."""
        manifest = manifest or {}
        training = manifest.get("training") or {}
        return cls(base_name=(manifest.get("base") or {}).get("name"),
                   base_quantization=str(manifest.get("base_quantization") or "16-bit"),
                   max_seq_length=training.get("max_seq_length"))


def read_trained_on(adapter_dir: str | Path) -> TrainedOn | None:
    """``TrainedOn`` from the adapter's ``loralab_manifest.json``, or None when it has none."""
    manifest = read_manifest(adapter_dir)
    return None if manifest is None else TrainedOn.from_manifest(manifest)
