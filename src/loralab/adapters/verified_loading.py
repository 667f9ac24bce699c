"""Load an adapter only onto the base it was trained on: the manifest is checked before any model loads.

    from loralab.adapters.verified_loading import load_verified_adapter, check_adapter_base
    model, tokenizer = load_verified_adapter("runs/.../adapter")                 # base named in the manifest
    model, tokenizer = load_verified_adapter(adapter_dir, base_model="embedded/smollm2-135m-instruct")
    check_adapter_base(adapter_dir, "path/to/other-base")    # ValueError naming what differs (weights,
                                                             # tokenizer, chat template); nothing loaded
    load_verified_adapter(adapter_dir, other_base, allow_base_mismatch=True)   # you know what you do

An adapter folder without ``loralab_manifest.json`` (saved by another tool) loads with a warning.
Only ``adapter_model.safetensors`` is loaded; a pickle ``adapter_model.bin`` is refused. Before any
model loads, ``verify_adapter_files`` checks that ``adapter_config.json`` parses, that the safetensors
header and sizes cover the file (a truncated download or copy fails here, not deep inside torch),
that every tensor reads back finite, and that every file the manifest recorded at save time (weights,
``adapter_config.json``, tokenizer files, chat template, README...) is still there with the same
SHA-256 (catches bytes changed in place, and an edited config such as another ``lora_alpha``, which
would load the adapter at another scale than it was trained at). A file the manifest does not know
(added later) is warned about (``AdapterFileWarning``), not refused. A manifest of version 1 lists
only the ``adapter_model*`` files; exactly those are checked::

    from loralab.adapters.verified_loading import verify_adapter_files
    verify_adapter_files("runs/.../adapter")     # AdapterFileError naming the file and what to do
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.adapters.manifest import Manifest, folder_paths, read_manifest
from loralab.model.fingerprints import BaseFingerprint, base_fingerprint, file_sha256


class AdapterFileError(ValueError):
    """An adapter file that is missing, corrupted or truncated; the message names the file and what to do."""


class AdapterFileWarning(UserWarning):
    """The adapter folder holds a file its manifest does not know (added after the adapter was saved)."""


class BaseMismatchWarning(UserWarning):
    """An adapter is loaded without a manifest, or onto a different base with the override."""


@dataclass
class BaseCheck:
    """Outcome of checking an adapter against a base, before loading anything."""

    adapter_dir: Path
    base_model: str  # the base that was checked (and will be loaded)
    base: BaseFingerprint
    manifest: Manifest | None  # None: the adapter has no manifest
    differences: list[str] = field(default_factory=list)  # [] = the same base (or no manifest to say)
    notes: list[str] = field(default_factory=list)  # harmless differences, e.g. 4-bit vs 16-bit base

    @property
    def verified(self) -> bool:
        return self.manifest is not None and not self.differences

    @property
    def base_quantization(self) -> str:
        """What the manifest says the adapter was trained on: "nf4-4bit" or "16-bit" (the default without one)."""
        return self.manifest.base_quantization if self.manifest else "16-bit"

    @property
    def load_in_4bit(self) -> bool:
        """True when the manifest says the adapter was trained on the 4-bit NF4 base."""
        return self.manifest is not None and self.manifest.load_in_4bit

    @property
    def max_seq_length(self) -> int | None:
        """The training sequence length the manifest records (None without one)."""
        return self.manifest.max_seq_length if self.manifest else None


def require_safetensors(adapter_dir: str | Path) -> Path:
    """The adapter's ``adapter_model.safetensors``; ValueError for a missing folder or a pickle-only adapter."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ValueError(f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json); "
                         "pass the folder that save_adapter wrote, e.g. runs/<run>/adapter.")
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        found = ", ".join(p.name for p in adapter_dir.glob("adapter_model*")) or "no weights"
        raise ValueError(f"{adapter_dir} has {found} but no adapter_model.safetensors; loralab loads only "
                         "safetensors (a .bin file is a pickle that can run code). Convert it where you trust it: "
                         "load it with PEFT and save_pretrained(..., safe_serialization=True).")
    return weights


_RESAVE = "re-save the adapter (or copy / download it again) from a good source"


def read_adapter_config(adapter_dir: str | Path) -> dict[str, Any]:
    """``adapter_config.json`` as a dict; AdapterFileError when it is not a JSON object with ``peft_type``."""
    path = Path(adapter_dir) / "adapter_config.json"
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise AdapterFileError(f"{path} is corrupted (not JSON: {str(error)[:80]}); {_RESAVE}.") from None
    if not isinstance(config, dict) or "peft_type" not in config:
        raise AdapterFileError(f"{path} is not a PEFT adapter config (a JSON object with 'peft_type'); {_RESAVE}.")
    return config


def verify_safetensors_file(path: str | Path, expected_sha256: str | None = None) -> int:
    """Open ``path`` with safetensors, read every tensor and check it is finite; returns the tensor count.

    AdapterFileError for a truncated / garbage file (header or sizes that do not cover the file), a tensor
    with NaN or inf values, or bytes that differ from ``expected_sha256``.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    size = path.stat().st_size
    try:
        with safe_open(str(path), framework="pt") as handle:
            names = list(handle.keys())
            for name in names:
                tensor = handle.get_tensor(name)
                if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
                    raise AdapterFileError(f"{path}: tensor {name!r} holds NaN or inf values: the file is corrupted "
                                           f"(or training diverged); {_RESAVE}.")
    except SafetensorError as error:
        reason = str(error).removeprefix("Error while deserializing header: ")
        raise AdapterFileError(f"{path} ({size} bytes) is corrupted or truncated: safetensors says '{reason}'; "
                               f"{_RESAVE}.") from None
    if expected_sha256 and file_sha256(path, use_cache=False) != expected_sha256:  # bit rot keeps the mtime
        raise AdapterFileError(f"{path} differs from the file the manifest recorded when it was saved (SHA-256 "
                               f"mismatch): it was modified or damaged since; {_RESAVE}.")
    return len(names)


def verify_recorded_files(adapter_dir: str | Path, manifest: Manifest | None = None,
                          already_checked: tuple[str, ...] = ()) -> list[str]:
    """Compare the adapter folder with the files its manifest recorded at save time; returns unknown files.

    AdapterFileError naming the first recorded file that is missing or whose SHA-256 changed. A file
    the manifest does not know is warned about (``AdapterFileWarning``) and returned; a version-1
    manifest (only ``adapter_model*`` listed) knows no other files, so nothing is warned about for it.
    ``already_checked`` names files whose digest the caller compared itself (they are not hashed twice).
    """
    adapter_dir = Path(adapter_dir)
    manifest = read_manifest(adapter_dir) if manifest is None else manifest
    if manifest is None:
        return []
    recorded = manifest.adapter_files or {}
    for name, digest in sorted(recorded.items()):
        if name in already_checked:
            continue
        path = adapter_dir / name
        if not path.is_file():
            raise AdapterFileError(f"{path} is missing: the manifest recorded it when the adapter was saved; "
                                   f"{_RESAVE}.")
        if file_sha256(path, use_cache=False) != digest:
            why = (" (an edited r, lora_alpha or target_modules loads the adapter at another scale or on other "
                   "layers than it was trained with)" if name == "adapter_config.json" else "")
            raise AdapterFileError(f"{path} differs from the file the manifest recorded when the adapter was saved "
                                   f"(SHA-256 mismatch): it was edited or damaged since{why}; {_RESAVE}.")
    if manifest.manifest_version < 2:
        return []  # version 1 recorded only adapter_model*: any other file is unknown to it by design
    unknown = [name for name in folder_paths(adapter_dir) if name not in recorded]
    if unknown:
        warnings.warn(f"{adapter_dir} holds {', '.join(unknown)}, which the manifest does not know (added after "
                      "the adapter was saved); it is not verified. Remove it, or save the adapter again if it "
                      "belongs to it.", AdapterFileWarning, stacklevel=3)
    return unknown


def verify_adapter_files(adapter_dir: str | Path) -> Path:
    """Check an adapter folder's files before any model loads; returns its ``adapter_model.safetensors``."""
    weights = require_safetensors(adapter_dir)
    read_adapter_config(adapter_dir)
    manifest = read_manifest(adapter_dir)
    recorded = ((manifest.adapter_files or {}) if manifest else {}).get(weights.name)
    if verify_safetensors_file(weights, recorded) == 0:
        raise AdapterFileError(f"{weights} holds no tensors; {_RESAVE}.")
    if manifest is not None:
        verify_recorded_files(adapter_dir, manifest, already_checked=(weights.name,))  # every other file the manifest recorded, as saved
    return weights


def _adapter_config_base(adapter_dir: Path) -> str | None:
    return read_adapter_config(adapter_dir).get("base_model_name_or_path")


def check_adapter_base(adapter_dir: str | Path, base_model: str | None = None, load_in_4bit: bool | None = None,
                       allow_base_mismatch: bool = False, base: BaseFingerprint | None = None) -> BaseCheck:
    """Compare the adapter's manifest with ``base_model``'s files; ValueError on a different base.

    ``base_model`` defaults to the base named in the manifest. ``base`` is a fingerprint already
    taken (a server checks many adapters against one base). With ``allow_base_mismatch=True`` the
    differences are returned and warned about instead of raised.
    """
    adapter_dir = Path(adapter_dir)
    verify_adapter_files(adapter_dir)  # config parses, safetensors intact, bytes as saved
    manifest = read_manifest(adapter_dir)
    if base_model is None:
        base_model = base.name if base is not None else (
            manifest.base.name if manifest else _adapter_config_base(adapter_dir))
    if not base_model:
        raise ValueError(f"{adapter_dir}: no manifest and no base_model_name_or_path in adapter_config.json; "
                         "pass base_model='<the base it was trained on>'.")
    if base is None:
        base = base_fingerprint(base_model)
    check = BaseCheck(adapter_dir, base_model, base, manifest)
    if manifest is None:
        warnings.warn(f"{adapter_dir} has no loralab_manifest.json: cannot verify that {base_model} is the base "
                      "this adapter was trained on. A LoRA adapter on other base weights gives wrong outputs "
                      "without any error.", BaseMismatchWarning, stacklevel=2)
        return check
    check.differences = manifest.base.differences(base)
    trained_4bit = check.load_in_4bit
    if load_in_4bit is not None and load_in_4bit != trained_4bit:
        check.notes.append(f"trained on a {'4-bit' if trained_4bit else '16-bit'} base, loading onto a "
                           f"{'4-bit' if load_in_4bit else '16-bit'} one: outputs differ by the quantization error")
    if check.differences:
        listing = "; ".join(check.differences)
        if not allow_base_mismatch:
            raise ValueError(
                f"Refusing to load {adapter_dir} onto {base_model}: it is not the base the adapter was trained on "
                f"({manifest.base.name}). Differences: {listing}. Load it onto the original base, or pass "
                "allow_base_mismatch=True if you know the adapter fits this base.")
        warnings.warn(f"Loading {adapter_dir} onto a different base {base_model} (allow_base_mismatch=True): "
                      f"{listing}", BaseMismatchWarning, stacklevel=2)
    return check


def load_verified_adapter(adapter_dir: str | Path, base_model: str | None = None, *,
                          load_in_4bit: bool | None = None, max_seq_length: int | None = None,
                          adapter_name: str = "default", allow_base_mismatch: bool = False):
    """Check the manifest, then load the base (via Unsloth) and the adapter (PEFT); returns (model, tokenizer).

    ``load_in_4bit`` defaults to what the adapter was trained on; ``max_seq_length`` to its training value.
    """
    import unsloth  # noqa: F401  (before peft)
    from peft import PeftModel

    from loralab.model.loading import load_model
    from loralab.params.run_config import validate_params

    check = check_adapter_base(adapter_dir, base_model, load_in_4bit, allow_base_mismatch)
    for note in check.notes:
        warnings.warn(note, BaseMismatchWarning, stacklevel=2)
    cfg = validate_params({
        "model_name": check.base_model,
        "load_in_4bit": check.load_in_4bit if load_in_4bit is None else load_in_4bit,
        "max_seq_length": max_seq_length or check.max_seq_length or 2048,
        "use_gradient_checkpointing": False,
    }, source="load_verified_adapter")
    model, tokenizer = load_model(cfg)
    model = PeftModel.from_pretrained(model, str(check.adapter_dir), adapter_name=adapter_name, is_trainable=False)
    model.eval()
    return model, tokenizer
