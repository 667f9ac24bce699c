"""Start preference tuning from an SFT adapter: verified against its base, loaded trainable and as the reference.

    from loralab.adapters.sft_start import load_sft_for_preference
    model, tokenizer = load_sft_for_preference(cfg)     # cfg.sft_adapter = "runs/<run>/adapter" (notebook 01)

    cfg = adopt_sft_shape(cfg)                          # notebook 05: the SFT adapter's r, alpha, layers
    model = FastLanguageModel.get_peft_model(model, r=cfg.lora_r, ...)   # Unsloth's path (vLLM, checkpointing)
    load_sft_weights(model, cfg.sft_adapter)            # its trained weights into that adapter

The usual recipe is SFT first, then preference tuning. The SFT adapter's manifest is checked against
the base before any model loads (a different base is refused). The adapter is trained as ``default``;
a frozen copy named ``ref`` is the reference (no second copy of the base): TRL's DPO and KTO trainers
make that copy themselves when they are built, and for ORPO (no reference in its loss) it is loaded
here, so the preference metrics measure every method against the SFT adapter it started from. ``sft_lineage`` is what the new adapter's manifest records about where it started.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from loralab.adapters.manifest import MANIFEST_NAME, read_manifest
from loralab.model.fingerprints import file_sha256
from loralab.params.errors import ParamsError
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig
from loralab.train.preference_trainer import REFERENCE_ADAPTER

S = TypeVar("S", bound=RunConfig)


def load_sft_for_preference(cfg: PreferenceConfig):
    """(model, tokenizer): the base with ``cfg.sft_adapter`` as the trainable ``default`` adapter.

    The adapter is checked against its base through its manifest first (``load_verified_adapter``). For
    ORPO a frozen copy ``ref`` is added here; DPO and KTO trainers add theirs (build the trainer before
    measuring against the reference).
    """
    from loralab.adapters.verified_loading import load_verified_adapter

    model, tokenizer = load_verified_adapter(cfg.sft_adapter, load_in_4bit=cfg.load_in_4bit,
                                             max_seq_length=cfg.max_seq_length)
    for name, param in model.named_parameters():  # the verified loader loads for inference: train this copy
        if "lora_" in name and f".{REFERENCE_ADAPTER}." not in name:
            param.requires_grad_(True)
    if not cfg.uses_reference:
        model.load_adapter(cfg.sft_adapter, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        model.set_adapter("default")
    return model, tokenizer


SHAPE_FIELDS = {"r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout", "use_rslora": "use_rslora"}


def adopt_sft_shape(cfg: S) -> S:
    """``cfg`` with the SFT adapter's own shape (r, alpha, dropout, layers, rsLoRA from its adapter_config.json)
    when ``cfg.sft_adapter`` is set, so that Unsloth's ``get_peft_model`` builds an adapter its weights fit
    (``load_sft_weights``); the values that change are printed. ``cfg`` itself without one. Call it after the
    adapter folder was checked (``prepare_grpo_data``)."""
    if not cfg.sft_adapter:
        return cfg
    saved = json.loads((Path(cfg.sft_adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    if saved.get("use_dora"):
        raise ParamsError(f"sft_adapter: {cfg.sft_adapter} is a DoRA adapter; notebook 05 continues plain LoRA or "
                          "rsLoRA adapters: start from the base (sft_adapter: '') or from a LoRA adapter.")
    shape = {ours: saved[theirs] for theirs, ours in SHAPE_FIELDS.items() if theirs in saved}
    targets = saved.get("target_modules")
    if targets:
        shape["target_modules"] = [targets] if isinstance(targets, str) else sorted(targets)
    changed = {k: v for k, v in shape.items() if k != "target_modules" and getattr(cfg, k) != v}
    if sorted(cfg.target_module_list) != shape.get("target_modules", sorted(cfg.target_module_list)):
        changed["target_modules"] = shape["target_modules"]
    if changed:
        print("from the SFT adapter's adapter_config.json: " + ", ".join(f"{k} {v}" for k, v in changed.items()))
    return cfg.model_copy(update=shape)


def load_sft_weights(model, adapter_dir: str | Path) -> None:
    """Copy the SFT adapter's trained weights into ``model``'s ``default`` adapter (built by Unsloth's
    ``get_peft_model`` with ``adopt_sft_shape``'s values); every LoRA weight of one must match the other."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    fix = "build it with adopt_sft_shape(cfg)'s r, alpha and target_modules"
    try:
        result = set_peft_model_state_dict(model, load_peft_weights(str(adapter_dir), device="cpu"),
                                           adapter_name="default")
    except RuntimeError as error:  # torch's size mismatch: another r
        first = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error)[:200])
        raise ValueError(f"{adapter_dir}: its weights do not fit the adapter built here ({first}); {fix}.") from None
    missing = [k for k in result.missing_keys if ".default." in k and "lora_" in k]
    if missing or result.unexpected_keys:
        wrong = (missing or result.unexpected_keys)[:3]
        raise ValueError(f"{adapter_dir}: its weights do not fit the adapter built here ({len(missing)} missing, "
                         f"{len(result.unexpected_keys)} unexpected, e.g. {', '.join(wrong)}); {fix}.")


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
