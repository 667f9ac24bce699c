"""Start preference tuning from an SFT adapter: verified against its base, loaded trainable and as the reference.

    from loralab.adapters.sft_start import load_sft_for_preference
    model, tokenizer = load_sft_for_preference(cfg)     # cfg.sft_adapter = "runs/<run>/adapter" (notebook 01)

The usual recipe is SFT first, then preference tuning. The SFT adapter's manifest is checked against
the base before any model loads (a different base is refused). The adapter is trained as ``default``;
a frozen copy named ``ref`` is the reference (no second copy of the base): TRL's DPO and KTO trainers
make that copy themselves when they are built, and for ORPO (no reference in its loss) it is loaded
here, so the preference metrics measure every method against the SFT adapter it started from. ``sft_lineage`` is what the new adapter's manifest records about where it started.
"""

from __future__ import annotations

from pathlib import Path

from loralab.adapters.manifest import MANIFEST_NAME, read_manifest
from loralab.model.fingerprints import file_sha256
from loralab.params.preference_config import PreferenceConfig
from loralab.train.preference_trainer import REFERENCE_ADAPTER


def load_sft_for_preference(cfg: PreferenceConfig, frozen_copy: bool | None = None):
    """(model, tokenizer): the base with ``cfg.sft_adapter`` as the trainable ``default`` adapter.

    The adapter is checked against its base through its manifest first (``load_verified_adapter``). For
    ORPO a frozen copy ``ref`` is added here; DPO and KTO trainers add theirs (build the trainer before
    measuring against the reference). ``frozen_copy`` overrides whether ``ref`` is loaded here (None: for
    ORPO only); notebook 05 passes False: TRL's GRPOTrainer adds its own ``ref`` when beta > 0.
    """
    from loralab.adapters.verified_loading import load_verified_adapter

    model, tokenizer = load_verified_adapter(cfg.sft_adapter, load_in_4bit=cfg.load_in_4bit,
                                             max_seq_length=cfg.max_seq_length)
    for name, param in model.named_parameters():  # the verified loader loads for inference: train this copy
        if "lora_" in name and f".{REFERENCE_ADAPTER}." not in name:
            param.requires_grad_(True)
    if (not cfg.uses_reference) if frozen_copy is None else frozen_copy:
        model.load_adapter(cfg.sft_adapter, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        model.set_adapter("default")
    return model, tokenizer


def sft_lineage(cfg: PreferenceConfig) -> dict | None:
    """The SFT adapter a run started from: its path, its manifest's SHA-256 and what it was trained on."""
    if not cfg.sft_adapter:
        return None
    folder = Path(cfg.sft_adapter)
    manifest = read_manifest(folder)
    training = (manifest.training if manifest else None) or {}
    return {"path": str(folder.resolve()), "manifest_sha256": file_sha256(folder / MANIFEST_NAME, use_cache=False),
            "dataset": training.get("dataset"),
            "dataset_sha256": manifest.dataset.sha256 if manifest and manifest.dataset else None,
            "base": manifest.base.name if manifest else None}
