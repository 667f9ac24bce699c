"""The adapter manifest: which exact base, tokenizer, data and settings an adapter was trained with.

A LoRA adapter only means something on the exact base weights it was trained against. Next to every
saved adapter (standard PEFT files, untouched) loralab writes ``loralab_manifest.json``::

    from loralab.adapters.manifest import write_manifest, read_manifest, base_fingerprint, compare_base
    write_manifest(adapter_dir, cfg, tokenizer=tokenizer, dataset_rows=rows, eval_scores={"shape": 0.9})
    manifest = read_manifest(adapter_dir)                    # dict, or None when there is none
    differences = compare_base(manifest, base_fingerprint("embedded/smollm2-135m-instruct"))  # [] = same base

What the base fingerprint holds, and what it costs:

* ``weights_sha256``: SHA-256 over the bytes of every ``*.safetensors`` file of the base folder
  (one digest per file, then one over the sorted ``name:digest`` list). Any changed weight, dtype,
  shape or tensor name changes it. Cost measured on these machines (2 shared AVX2 cores with SHA
  instructions, OpenSSL's SHA-256): 0.25 s for the 269 MB embedded model from the page cache, about
  1.1 GB/s on one core. Extrapolated to an 8B model in bf16 (16 GB): about 15 s of hashing from the
  page cache, bounded by the disk otherwise (16 GB at 0.5-2 GB/s: 8-30 s), i.e. about what reading
  the weights for the load costs anyway. So that it is cheap on *every* load, each file's digest is
  cached in ``$LORALAB_CACHE/fingerprints.json`` under (real path, size, mtime in ns, inode): a file
  that was not rewritten costs a ``stat`` (the whole embedded-model fingerprint: 1-2 ms) the next
  time; a rewritten file is hashed again.
* ``tokenizer_sha256``: SHA-256 over the tokenizer files (``tokenizer.json``, ``tokenizer.model``,
  ``vocab.json``, ``merges.txt``, ``special_tokens_map.json``, ``added_tokens.json``) and
  ``tokenizer_config.json`` without its ``chat_template`` entry, as canonical JSON where it is JSON.
* ``chat_template_sha256``: SHA-256 of the chat template text (``chat_template.jinja``, else the
  ``chat_template`` entry of ``tokenizer_config.json``); ``None`` for a base without one.
* ``revision``: the hub commit for a folder inside the Hugging Face cache (``.../snapshots/<sha>``).

``training_end_of_turn_token`` is the token the chat template closes each answer with, which training
supervised (``loralab.data.supervision``); the GGUF export and the Ollama Modelfile check that they stop on it.

The manifest also records ``adapter_files``: the SHA-256 of every regular file of the adapter folder
(path relative to the folder -> digest), the manifest itself excepted: the weights, but also
``adapter_config.json`` (an edited ``lora_alpha`` loads the adapter at another scale than it was
trained at), the tokenizer files, the chat template and the README. ``verify_adapter_files`` in
``loralab.adapters.verified_loading`` refuses any of them that changed or went missing. Manifests of
version 1 list only the ``adapter_model*`` files; those are checked as listed.

Hub names are resolved to their local snapshot (no download); a name that is not available locally
gets ``weights_sha256 = None`` and the manifest says so.

A merged model folder (``loralab.export.merge.merge_adapter``) gets a manifest too, ``kind:
"merged-model"``: the adapter's base, ``base_quantization``, LoRA, training and data sections, plus
``merge`` (``merge_into``: the dequantized NF4 or the original weights, probe differences), ``parity``
(the held-out comparison with the model as trained, ``loralab.export.parity``) and ``model_files``::

    write_merged_manifest(merged_dir, adapter_dir, read_manifest(adapter_dir), base_name, merge, parity)
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loralab.atomic_file import write_text_aside
from loralab.model.embedded import cache_dir, resolve_model_path
from loralab.params.names import is_embedded
from loralab.params.run_config import RunConfig, changes_base
from loralab.plan.lora_math import alpha_scale

MANIFEST_NAME = "loralab_manifest.json"
# 2: "adapter_files" holds every file of the adapter folder (1: only adapter_model*).
MANIFEST_VERSION = 2
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt", "special_tokens_map.json",
                   "added_tokens.json", "tokenizer_config.json")
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class BaseFingerprint:
    """What identifies a base model: name, revision, and content digests of weights and tokenizer."""

    name: str  # the name the user gave (embedded/..., a hub id, or a folder)
    path: str | None  # the local folder it resolved to (None: not available locally)
    revision: str | None  # hub commit, where the folder is a hub cache snapshot
    weights_sha256: str | None  # digest over every *.safetensors file (None: no local files)
    weight_files: dict[str, str]  # file name -> its SHA-256
    weights_bytes: int  # total size of the hashed files
    tokenizer_sha256: str | None  # tokenizer files, chat template excluded
    chat_template_sha256: str | None  # the chat template text alone
    seconds: float  # time this fingerprint took (mostly cache hits after the first time)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_file() -> Path:
    return cache_dir() / "fingerprints.json"


def _load_cache() -> dict[str, str]:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict[str, str]) -> None:
    path = _cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_aside(path, json.dumps(cache, indent=0, sort_keys=True))
    except OSError:
        pass  # a read-only cache only costs speed


def file_sha256(path: str | Path, use_cache: bool = True) -> str:
    """SHA-256 of a file's bytes, cached under (real path, size, mtime_ns, inode) when ``use_cache``."""
    real = Path(path).resolve()
    if not use_cache:
        return _sha256_file(real)
    stat = real.stat()
    key = f"{real}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    cache = _load_cache()
    if key not in cache:
        cache = {k: v for k, v in cache.items() if not k.startswith(f"{real}|")}  # drop stale entries
        cache[key] = _sha256_file(real)
        _save_cache(cache)
    return cache[key]


def local_model_folder(name: str) -> Path | None:
    """The local folder of an embedded name, a folder path, or a hub id already in the HF cache."""
    if is_embedded(name):
        return Path(resolve_model_path(name))
    if Path(name).is_dir():
        return Path(name).resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except (ImportError, OSError, ValueError):  # not cached locally, or not a valid id: no content fingerprint
        return None


def _hub_revision(folder: Path) -> str | None:
    parts = folder.resolve().parts
    if len(parts) >= 2 and parts[-2] == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", parts[-1]):
        return parts[-1]
    return None


def chat_template_text(folder: str | Path) -> str | None:
    """The chat template stored in a model/tokenizer folder, or None."""
    folder = Path(folder)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, list):  # several named templates
            return json.dumps(template, sort_keys=True)
        return template
    return None


def tokenizer_sha256(folder: str | Path) -> str | None:
    """Digest of the tokenizer files in ``folder`` (chat template left out; see ``chat_template_text``)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        path = folder / name
        if not path.is_file():
            continue
        found = True
        digest.update(name.encode() + b"\0")
        if name == "tokenizer_config.json":
            config = json.loads(path.read_text(encoding="utf-8"))
            config.pop("chat_template", None)
            digest.update(json.dumps(config, sort_keys=True).encode())
        else:
            digest.update(file_sha256(path).encode())
    return digest.hexdigest() if found else None


def _text_sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text is not None else None


def base_fingerprint(name: str, use_cache: bool = True) -> BaseFingerprint:
    """Fingerprint the base model ``name`` (embedded name, folder, or locally cached hub id) from its files."""
    started = time.perf_counter()
    folder = local_model_folder(name)
    if folder is None:
        return BaseFingerprint(name, None, None, None, {}, 0, None, None, time.perf_counter() - started)
    files = sorted(folder.glob("*.safetensors"))
    per_file = {f.name: file_sha256(f, use_cache=use_cache) for f in files}
    weights = None
    if per_file:
        weights = hashlib.sha256("\n".join(f"{k}:{v}" for k, v in sorted(per_file.items())).encode()).hexdigest()
    return BaseFingerprint(
        name=name,
        path=str(folder),
        revision=_hub_revision(folder),
        weights_sha256=weights,
        weight_files=per_file,
        weights_bytes=sum(f.stat().st_size for f in files),
        tokenizer_sha256=tokenizer_sha256(folder),
        chat_template_sha256=_text_sha256(chat_template_text(folder)),
        seconds=time.perf_counter() - started,
    )


def dataset_sha256(rows: list[dict]) -> str:
    """Digest of rows as canonical JSON (order matters: it is the data the run saw)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()


def lora_summary(adapter_dir: str | Path) -> dict[str, Any]:
    """r, alpha, the effective scale, targets and dropout, read from PEFT's ``adapter_config.json``."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    rslora = bool(config.get("use_rslora", False))
    targets = config.get("target_modules")
    return {
        "r": r,
        "lora_alpha": alpha,
        "scale": alpha_scale(alpha, r, rslora),
        "scale_formula": "alpha/sqrt(r)" if rslora else "alpha/r",
        "target_modules": sorted(targets) if isinstance(targets, list) else targets,
        "lora_dropout": config.get("lora_dropout"),
        "use_rslora": rslora,
        "use_dora": bool(config.get("use_dora", False)),
        "init_lora_weights": config.get("init_lora_weights", True),
        "bias": config.get("bias"),
        "peft_type": config.get("peft_type"),
        "base_model_name_or_path": config.get("base_model_name_or_path"),
    }


def variant_record(cfg: RunConfig) -> dict[str, Any] | None:
    """The LoRA variant as trained: its name and knobs, and whether the saved adapter was converted to plain
    LoRA for the original base (PiSSA/OLoRA: ``saved_as``), so merge and export know what they hold."""
    if cfg.full_finetuning:
        return None
    converted = changes_base(cfg.init_lora_weights)
    return {
        "name": cfg.lora_variant,
        "use_rslora": cfg.use_rslora,
        "use_dora": cfg.use_dora,
        "init_lora_weights": cfg.init_lora_weights,
        "loraplus_lr_ratio": cfg.loraplus_lr_ratio,
        "trained_r": cfg.lora_r,
        "saved_as": ("plain LoRA for the original base (PEFT's PiSSA/OLoRA conversion: rank 2r, alpha x2, x sqrt(2) "
                     "with rsLoRA)"
                     if converted else "as trained"),
        "converted_to_lora": converted,
    }


def _is_manifest_file(relative: str) -> bool:
    return relative == MANIFEST_NAME or (relative.startswith(MANIFEST_NAME) and relative.endswith(".tmp"))


def adapter_folder_paths(adapter_dir: str | Path) -> list[str]:
    """Every regular file under ``adapter_dir`` as a relative POSIX path, sorted; the manifest left out."""
    folder = Path(adapter_dir)
    return sorted(relative for path in folder.rglob("*")
                  if path.is_file() and not _is_manifest_file(relative := path.relative_to(folder).as_posix()))


def adapter_folder_files(adapter_dir: str | Path) -> dict[str, str]:
    """SHA-256 of every regular file under ``adapter_dir`` (relative POSIX path -> digest), the manifest excepted.

    Read from the bytes every time (no cache): this is what the manifest records and what verification compares.
    """
    folder = Path(adapter_dir)
    return {relative: file_sha256(folder / relative, use_cache=False) for relative in adapter_folder_paths(folder)}


def _end_of_turn(tokenizer) -> str | None:
    """The chat template's end-of-turn token, which training supervised at the end of every answer (or None)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return None
    from loralab.data.supervision import end_of_turn_token

    return end_of_turn_token(tokenizer)


def build_manifest(adapter_dir: str | Path, cfg: RunConfig, tokenizer=None, dataset_rows: list[dict] | None = None,
                   eval_scores: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   eval_rows: list[dict] | None = None) -> dict[str, Any]:
    """The manifest for an adapter saved in ``adapter_dir`` from a run with ``cfg``.

    ``dataset_rows`` are the rows trained on, ``eval_rows`` the held-out rows (both fingerprinted).
    """
    from loralab.model.versions import library_versions

    base = base_fingerprint(cfg.model_name)
    template = getattr(tokenizer, "chat_template", None) if tokenizer is not None else None
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": {k: v for k, v in asdict(base).items() if k not in ("path", "seconds")},
        "base_quantization": "nf4-4bit" if cfg.load_in_4bit and not cfg.full_finetuning else "16-bit",
        "training_chat_template_sha256": _text_sha256(template) if isinstance(template, str) else None,
        # the token every supervised answer ended with (loralab.data.supervision); exports must stop on it
        "training_end_of_turn_token": _end_of_turn(tokenizer),
        # a full fine-tuning run saves the whole model: no LoRA config to summarise
        "lora": lora_summary(adapter_dir) if (Path(adapter_dir) / "adapter_config.json").is_file() else None,
        "variant": variant_record(cfg),
        "training": cfg.model_dump(),
        "dataset": {
            "name": cfg.dataset,
            "split": cfg.dataset_split,
            "rows": len(dataset_rows) if dataset_rows is not None else None,
            "sha256": dataset_sha256(dataset_rows) if dataset_rows is not None else None,
        },
        "eval_dataset": {
            "name": cfg.eval_dataset or (f"eval_fraction {cfg.eval_fraction:g} of dataset" if cfg.eval_fraction
                                         else None),
            "split": cfg.eval_split,
            "rows": len(eval_rows) if eval_rows is not None else None,
            "sha256": dataset_sha256(eval_rows) if eval_rows else None,
        },
        "eval": eval_scores or {},
        "versions": library_versions(),
        # every file of the folder (config, weights, tokenizer, chat template, README), checked before a load
        "adapter_files": adapter_folder_files(adapter_dir),
    }
    if base.weights_sha256 is None:
        manifest["base"]["note"] = "base files were not available locally: no content fingerprint"
    if extra:
        manifest["extra"] = extra
    return manifest


def write_manifest(adapter_dir: str | Path, cfg: RunConfig, tokenizer=None, dataset_rows: list[dict] | None = None,
                   eval_scores: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                   eval_rows: list[dict] | None = None) -> Path:
    """Write ``loralab_manifest.json`` into ``adapter_dir`` (aside, then renamed) and return its path."""
    manifest = build_manifest(adapter_dir, cfg, tokenizer, dataset_rows, eval_scores, extra, eval_rows)
    return write_text_aside(Path(adapter_dir) / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True, default=str))


def read_manifest(adapter_dir: str | Path) -> dict[str, Any] | None:
    """The manifest next to an adapter, or None when the folder has none (an adapter saved elsewhere)."""
    path = Path(adapter_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); delete it to load the adapter unverified.") from None
    if not isinstance(manifest, dict) or "base" not in manifest:
        raise ValueError(f"{path} has no 'base' section; it was not written by loralab.adapters.manifest.write_manifest.")
    return manifest


def compare_base(manifest: dict[str, Any], base: BaseFingerprint) -> list[str]:
    """Differences between the base an adapter was trained on and ``base``, one sentence each ([] = same)."""
    trained = manifest["base"]
    differences = []
    checks = [
        ("weights_sha256", "weights (safetensors content)"),
        ("tokenizer_sha256", "tokenizer files"),
        ("chat_template_sha256", "chat template"),
    ]
    for key, label in checks:
        want, have = trained.get(key), getattr(base, key)
        if want is None and have is None:
            continue
        if want is None or have is None:
            if key == "weights_sha256":
                differences.append(f"{label}: cannot compare (trained base {want or 'not fingerprinted'}, "
                                   f"this base {have or 'not available locally'})")
            elif want != have:
                differences.append(f"{label}: trained base has {'none' if want is None else want[:12]}, "
                                   f"this base has {'none' if have is None else have[:12]}")
            continue
        if want != have:
            detail = ""
            if key == "weights_sha256":
                changed = sorted(
                    set(trained.get("weight_files", {}).items()) ^ set(base.weight_files.items()))
                names = sorted({name for name, _ in changed})
                detail = f"; files that differ: {', '.join(names)}" if names else ""
            differences.append(f"{label}: trained on {want[:12]}, this base is {have[:12]}{detail}")
    weights_compared = trained.get("weights_sha256") is not None and base.weights_sha256 is not None
    if not weights_compared and trained.get("revision") and base.revision and trained["revision"] != base.revision:
        differences.append(f"hub revision: trained on {trained['revision']}, this base is {base.revision}")
    return differences


def write_merged_manifest(folder: str | Path, adapter_dir: str | Path, adapter_manifest: dict[str, Any] | None,
                          base_model: str, merge: dict[str, Any], parity: dict[str, Any] | None) -> Path:
    """Write ``loralab_manifest.json`` into a merged model folder: where it came from, how it was merged, parity.

    ``kind`` is ``"merged-model"``; ``base``, ``base_quantization`` (what the adapter was trained on),
    ``lora``, ``variant``, ``training`` and ``dataset`` are the adapter's; ``merge`` holds ``merge_into`` and the probe
    differences, ``parity`` the held-out comparison with the model as trained (``loralab.export.parity``),
    ``model_files`` the SHA-256 of every file of the folder.
    """
    from loralab.model.versions import library_versions

    folder, adapter_dir = Path(folder), Path(adapter_dir)
    source = adapter_manifest or {}
    base = source.get("base") or {k: v for k, v in asdict(base_fingerprint(base_model)).items()
                                  if k not in ("path", "seconds")}
    adapter_manifest_path = adapter_dir / MANIFEST_NAME
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "kind": "merged-model",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "base": base,
        "base_quantization": source.get("base_quantization", "16-bit"),
        "training_end_of_turn_token": source.get("training_end_of_turn_token"),
        "merged_from": {
            "adapter_dir": str(adapter_dir.resolve()),
            "adapter_manifest_sha256": file_sha256(adapter_manifest_path, use_cache=False)
            if adapter_manifest_path.is_file() else None,
            "adapter_files": source.get("adapter_files"),
        },
        "merge": merge,
        "parity": parity,
        "lora": source.get("lora"),
        "variant": source.get("variant"),
        "training": source.get("training"),
        "dataset": source.get("dataset"),
        "eval": source.get("eval", {}),
        "versions": library_versions(),
        "model_files": adapter_folder_files(folder),
    }
    return write_text_aside(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True, default=str))
