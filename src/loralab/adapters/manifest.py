"""The manifest: which exact base, tokenizer, data and settings an adapter (or a merged model) was made with.

A LoRA adapter only means something on the exact base weights it was trained against. Next to every
saved adapter (standard PEFT files, untouched) loralab writes ``loralab_manifest.json``, one typed record
(``Manifest``) that the same class writes and reads::

    from loralab.adapters.manifest import Manifest, read_manifest, write_manifest
    from loralab.model.fingerprints import base_fingerprint
    write_manifest(adapter_dir, cfg, tokenizer=tokenizer, dataset_rows=rows, eval_scores={"shape": 0.9})
    manifest = read_manifest(adapter_dir)            # a Manifest, or None when the folder has none
    manifest.base.name, manifest.load_in_4bit, manifest.lora.scale, manifest.dataset.sha256
    manifest.base.differences(base_fingerprint("embedded/smollm2-135m-instruct"))   # [] = same base

A file that is not JSON, not a loralab manifest, or holds a field of the wrong type raises ``ManifestError``
(a ``ValueError``) naming the file and the field. The base fingerprint (weights, tokenizer, chat template,
hub revision) is ``loralab.model.fingerprints``. ``training_end_of_turn_token`` is the token the chat
template closes each answer with, which training supervised (``loralab.data.supervision``); the GGUF export
and the Ollama Modelfile check that they stop on it.

``adapter_files`` holds the SHA-256 of every regular file of the adapter folder (path relative to the
folder -> digest), the manifest itself excepted: the weights, but also ``adapter_config.json`` (an edited
``lora_alpha`` loads the adapter at another scale than it was trained at), the tokenizer files, the chat
template and the README. ``verify_adapter_files`` in ``loralab.adapters.verified_loading`` refuses any of
them that changed or went missing. Manifests of version 1 list only the ``adapter_model*`` files; those
are checked as listed.

A merged model folder (``loralab.export.merge.merge_adapter``) gets a manifest too, ``kind:
"merged-model"``: the adapter's base, ``base_quantization``, LoRA, training and data sections, plus
``merged_from``, ``merge`` (``merge_into``: the dequantized NF4 or the original weights, probe differences),
``parity`` (the held-out comparison with the model as trained, ``loralab.export.parity``) and
``model_files``; a GGUF export folder one of ``kind: "gguf-export"`` with ``files`` and ``modelfile``::

    Manifest.for_merged(merged_dir, adapter_dir, read_manifest(adapter_dir), base_name, merge, parity).write(merged_dir)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from loralab.atomic_file import write_text_aside
from loralab.model.fingerprints import (
    BaseFingerprint,
    base_fingerprint,
    dataset_sha256,
    file_sha256,
    text_sha256,
)
from loralab.params.run_config import RunConfig, changes_base
from loralab.plan.lora_math import alpha_scale

MANIFEST_NAME = "loralab_manifest.json"
# 2: "adapter_files" holds every file of the adapter folder (1: only adapter_model*).
MANIFEST_VERSION = 2


class ManifestError(ValueError):
    """A ``loralab_manifest.json`` that is not JSON, not a loralab manifest, or malformed; says which and where."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())  # `model_files` is a field (pydantic < 2.10)


class BaseRecord(_Record):
    """The base an adapter was trained against: its name and the digests of its files."""

    name: str | None = None  # the name the user gave (embedded/..., a hub id, or a folder)
    revision: str | None = None  # hub commit, where the folder is a hub cache snapshot
    weights_sha256: str | None = None  # digest over every *.safetensors file (None: not available locally)
    weight_files: dict[str, str] = {}  # file name -> its SHA-256
    weights_bytes: int = 0
    tokenizer_sha256: str | None = None
    chat_template_sha256: str | None = None
    note: str | None = None  # why there is no content fingerprint

    @classmethod
    def of(cls, fp: BaseFingerprint) -> BaseRecord:
        """The record of a fingerprint just taken."""
        return cls(name=fp.name, revision=fp.revision, weights_sha256=fp.weights_sha256, weight_files=fp.weight_files,
                   weights_bytes=fp.weights_bytes, tokenizer_sha256=fp.tokenizer_sha256,
                   chat_template_sha256=fp.chat_template_sha256,
                   note=None if fp.weights_sha256 else "base files were not available locally: no content fingerprint")

    def differences(self, base: BaseFingerprint) -> list[str]:
        """Differences between this base and ``base``, one sentence each ([] = the same base)."""
        differences = []
        for key, label in (("weights_sha256", "weights (safetensors content)"), ("tokenizer_sha256", "tokenizer files"),
                           ("chat_template_sha256", "chat template")):
            want, have = getattr(self, key), getattr(base, key)
            if want == have:
                continue
            if key == "weights_sha256" and (want is None or have is None):
                differences.append(f"{label}: cannot compare (trained base {want or 'not fingerprinted'}, "
                                   f"this base {have or 'not available locally'})")
            elif want is None or have is None:
                differences.append(f"{label}: trained base has {'none' if want is None else want[:12]}, "
                                   f"this base has {'none' if have is None else have[:12]}")
            else:
                detail = ""
                if key == "weights_sha256":
                    names = sorted({name for name, _ in set(self.weight_files.items()) ^ set(base.weight_files.items())})
                    detail = f"; files that differ: {', '.join(names)}" if names else ""
                differences.append(f"{label}: trained on {want[:12]}, this base is {have[:12]}{detail}")
        weights_compared = self.weights_sha256 is not None and base.weights_sha256 is not None
        if not weights_compared and self.revision and base.revision and self.revision != base.revision:
            differences.append(f"hub revision: trained on {self.revision}, this base is {base.revision}")
        return differences


class LoraRecord(_Record):
    """r, alpha, the effective scale, targets and dropout, as PEFT's ``adapter_config.json`` holds them."""

    r: int
    lora_alpha: int | float
    scale: float
    scale_formula: str  # "alpha/r", or "alpha/sqrt(r)" with rsLoRA
    target_modules: list[str] | str | None = None
    lora_dropout: float | None = None
    use_rslora: bool = False
    use_dora: bool = False
    init_lora_weights: bool | str = True
    bias: str | None = None
    peft_type: str | None = None
    base_model_name_or_path: str | None = None

    @classmethod
    def of_adapter(cls, adapter_dir: str | Path) -> LoraRecord:
        """Read from the adapter folder's ``adapter_config.json``."""
        config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
        r, alpha = config["r"], config["lora_alpha"]
        rslora = bool(config.get("use_rslora", False))
        targets = config.get("target_modules")
        return cls(r=r, lora_alpha=alpha, scale=alpha_scale(alpha, r, rslora),
                   scale_formula="alpha/sqrt(r)" if rslora else "alpha/r",
                   target_modules=sorted(targets) if isinstance(targets, list) else targets,
                   lora_dropout=config.get("lora_dropout"), use_rslora=rslora,
                   use_dora=bool(config.get("use_dora", False)), init_lora_weights=config.get("init_lora_weights", True),
                   bias=config.get("bias"), peft_type=config.get("peft_type"),
                   base_model_name_or_path=config.get("base_model_name_or_path"))


class VariantRecord(_Record):
    """The LoRA variant as trained, and whether the saved adapter was converted to plain LoRA (PiSSA/OLoRA)."""

    name: str
    use_rslora: bool
    use_dora: bool
    init_lora_weights: bool | str
    loraplus_lr_ratio: float | None = None
    trained_r: int
    saved_as: str
    converted_to_lora: bool


class DatasetRecord(_Record):
    """The rows a run saw: where from, how many, and their SHA-256 as canonical JSON."""

    name: str | None = None
    split: str | None = None
    rows: int | None = None
    sha256: str | None = None


class MergedFrom(_Record):
    """Where a merged folder (the adapter) or a GGUF export (the merged folder) came from."""

    adapter_dir: str | None = None
    adapter_manifest_sha256: str | None = None
    adapter_files: dict[str, str] | None = None
    merged_dir: str | None = None


class Manifest(_Record):
    """``loralab_manifest.json``: written with ``write(folder)``, read with ``Manifest.read(folder)``."""

    manifest_version: int = MANIFEST_VERSION
    kind: Literal["adapter", "merged-model", "gguf-export"] = "adapter"
    created: str = Field(default_factory=_now)
    base: BaseRecord
    base_quantization: str = "16-bit"  # "nf4-4bit" for a QLoRA adapter
    training_chat_template_sha256: str | None = None
    training_end_of_turn_token: str | None = None  # the token every supervised answer ended with
    lora: LoraRecord | None = None  # None: a full fine-tuning run (no LoRA config)
    variant: VariantRecord | None = None
    training: dict[str, Any] | None = None  # the run's validated parameters
    dataset: DatasetRecord | None = None
    eval_dataset: DatasetRecord | None = None
    eval: dict[str, Any] = {}
    versions: dict[str, Any] = {}
    adapter_files: dict[str, str] | None = None  # every file of the adapter folder -> SHA-256, checked before a load
    extra: dict[str, Any] | None = None
    merged_from: MergedFrom | None = None  # merged-model, gguf-export
    merge: dict[str, Any] | None = None  # merged-model: merge_into and the probe differences
    parity: dict[str, Any] | None = None  # merged-model: the held-out comparison with the model as trained
    model_files: dict[str, str] | None = None  # merged-model: every file of the folder -> SHA-256
    merge_into: str | None = None  # gguf-export
    files: list[dict[str, Any]] | None = None  # gguf-export: one entry per GGUF file
    modelfile: dict[str, Any] | None = None  # gguf-export: the Ollama Modelfile's check

    @field_validator("adapter_files")
    @classmethod
    def _relative_paths(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name in value or {}:
            parts = Path(name).parts
            if not parts or Path(name).is_absolute() or ".." in parts:
                raise ValueError(f"{name!r} is not a path inside the adapter folder")
        return value

    @property
    def load_in_4bit(self) -> bool:
        """True when the adapter was trained on the 4-bit NF4 base (QLoRA)."""
        return self.base_quantization.startswith("nf4")

    @property
    def max_seq_length(self) -> int | None:
        """The training sequence length, None when not recorded."""
        return (self.training or {}).get("max_seq_length")

    def write(self, folder: str | Path) -> Path:
        """Write ``loralab_manifest.json`` into ``folder`` (aside, then renamed) and return its path."""
        text = json.dumps(self.model_dump(), indent=2, sort_keys=True, default=str)
        return write_text_aside(Path(folder) / MANIFEST_NAME, text)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read a manifest file, or the one in a folder; ManifestError when it is not one loralab wrote."""
        path = Path(path)
        path = path / MANIFEST_NAME if path.is_dir() else path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise ManifestError(f"{path} is not valid JSON ({str(error)[:80]}); delete it to load the adapter "
                                "unverified.") from None
        if not isinstance(data, dict) or "base" not in data or "manifest_version" not in data:
            raise ManifestError(f"{path} is not a loralab manifest (no 'manifest_version' and 'base'); it was not "
                                "written by loralab: delete or rename it.")
        if isinstance(data["manifest_version"], int) and data["manifest_version"] > MANIFEST_VERSION:
            raise ManifestError(f"{path} is manifest version {data['manifest_version']}, newer than this loralab "
                                f"reads ({MANIFEST_VERSION}): upgrade loralab.")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
            raise ManifestError(f"{path} is malformed: {where}: {first['msg']}{more}; save the adapter again "
                                "(or copy it again) from a good source.") from None

    @classmethod
    def for_adapter(cls, adapter_dir: str | Path, cfg: RunConfig, tokenizer=None, dataset_rows: list[dict] | None = None,
                    eval_scores: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                    eval_rows: list[dict] | None = None) -> Manifest:
        """The manifest of an adapter saved in ``adapter_dir`` by a run with ``cfg``.

        ``dataset_rows`` are the rows trained on, ``eval_rows`` the held-out rows (both fingerprinted).
        """
        from loralab.model.versions import library_versions

        template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
        has_lora = (Path(adapter_dir) / "adapter_config.json").is_file()  # full fine-tuning saves the whole model
        eval_name = cfg.eval_dataset or (f"eval_fraction {cfg.eval_fraction:g} of dataset" if cfg.eval_fraction else None)
        return cls(
            base=BaseRecord.of(base_fingerprint(cfg.model_name)),
            base_quantization="nf4-4bit" if cfg.load_in_4bit and not cfg.full_finetuning else "16-bit",
            training_chat_template_sha256=text_sha256(template) if isinstance(template, str) else None,
            training_end_of_turn_token=_end_of_turn(tokenizer),
            lora=LoraRecord.of_adapter(adapter_dir) if has_lora else None,
            variant=variant_record(cfg),
            training=cfg.model_dump(),
            dataset=DatasetRecord(name=cfg.dataset, split=cfg.dataset_split,
                                  rows=len(dataset_rows) if dataset_rows is not None else None,
                                  sha256=dataset_sha256(dataset_rows) if dataset_rows is not None else None),
            eval_dataset=DatasetRecord(name=eval_name, split=cfg.eval_split,
                                       rows=len(eval_rows) if eval_rows is not None else None,
                                       sha256=dataset_sha256(eval_rows) if eval_rows else None),
            eval=eval_scores or {},
            versions=library_versions(),
            adapter_files=folder_files(adapter_dir),
            extra=extra or None,
        )

    @classmethod
    def for_merged(cls, folder: str | Path, adapter_dir: str | Path, adapter: Manifest | None, base_model: str,
                   merge: dict[str, Any], parity: dict[str, Any] | None) -> Manifest:
        """The manifest of a merged model folder: the adapter's base, LoRA, training and data sections, how it
        was merged, its parity with the model as trained, and the SHA-256 of every file of ``folder``."""
        from loralab.model.versions import library_versions

        adapter_dir = Path(adapter_dir)
        source = adapter or cls(base=BaseRecord.of(base_fingerprint(base_model)))
        adapter_manifest = adapter_dir / MANIFEST_NAME
        return cls(
            kind="merged-model", base=source.base, base_quantization=source.base_quantization,
            training_end_of_turn_token=source.training_end_of_turn_token,
            merged_from=MergedFrom(adapter_dir=str(adapter_dir.resolve()), adapter_files=source.adapter_files,
                                   adapter_manifest_sha256=file_sha256(adapter_manifest, use_cache=False)
                                   if adapter_manifest.is_file() else None),
            merge=merge, parity=parity, lora=source.lora, variant=source.variant, training=source.training,
            dataset=source.dataset, eval=source.eval, versions=library_versions(), model_files=folder_files(folder),
        )


def variant_record(cfg: RunConfig) -> VariantRecord | None:
    """The LoRA variant as trained: its name and knobs, and whether the saved adapter was converted to plain
    LoRA for the original base (PiSSA/OLoRA: ``saved_as``), so merge and export know what they hold."""
    if cfg.full_finetuning:
        return None
    converted = changes_base(cfg.init_lora_weights)
    return VariantRecord(
        name=cfg.lora_variant, use_rslora=cfg.use_rslora, use_dora=cfg.use_dora,
        init_lora_weights=cfg.init_lora_weights, loraplus_lr_ratio=cfg.loraplus_lr_ratio, trained_r=cfg.lora_r,
        saved_as=("plain LoRA for the original base (PEFT's PiSSA/OLoRA conversion: rank 2r, alpha x2, x sqrt(2) "
                  "with rsLoRA)" if converted else "as trained"),
        converted_to_lora=converted)


def _is_manifest_file(relative: str) -> bool:
    return relative == MANIFEST_NAME or (relative.startswith(MANIFEST_NAME) and relative.endswith(".tmp"))


def folder_paths(folder: str | Path) -> list[str]:
    """Every regular file under ``folder`` as a relative POSIX path, sorted; the manifest left out."""
    folder = Path(folder)
    return sorted(relative for path in folder.rglob("*")
                  if path.is_file() and not _is_manifest_file(relative := path.relative_to(folder).as_posix()))


def folder_files(folder: str | Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``folder`` (relative POSIX path -> digest), the manifest excepted.

    Read from the bytes every time (no cache): this is what the manifest records and what verification compares.
    """
    folder = Path(folder)
    return {relative: file_sha256(folder / relative, use_cache=False) for relative in folder_paths(folder)}


def _end_of_turn(tokenizer) -> str | None:
    """The chat template's end-of-turn token, which training supervised at the end of every answer (or None)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None
    from loralab.data.supervision import end_of_turn_token

    return end_of_turn_token(tokenizer)


def write_manifest(adapter_dir: str | Path, cfg: RunConfig, tokenizer=None, dataset_rows: list[dict] | None = None,
                   eval_scores: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   eval_rows: list[dict] | None = None) -> Path:
    """Write the adapter's ``loralab_manifest.json`` (``Manifest.for_adapter``) and return its path."""
    manifest = Manifest.for_adapter(adapter_dir, cfg, tokenizer, dataset_rows, eval_scores, extra, eval_rows)
    return manifest.write(adapter_dir)


def read_manifest(folder: str | Path) -> Manifest | None:
    """The manifest in ``folder``, or None when it has none (an adapter saved by another tool)."""
    return Manifest.read(folder) if (Path(folder) / MANIFEST_NAME).is_file() else None
