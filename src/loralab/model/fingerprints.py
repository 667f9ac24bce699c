"""Content fingerprints of a base model folder, of files and of data rows, with a digest cache safe for parallel jobs.

    from loralab.model.fingerprints import base_fingerprint, file_sha256, dataset_sha256
    fp = base_fingerprint("embedded/smollm2-135m-instruct")   # weights, tokenizer, chat template digests
    fp.weights_sha256, fp.tokenizer_sha256, fp.chat_template_sha256

What a base fingerprint holds, and what it costs:

* ``weights_sha256``: SHA-256 over the bytes of every ``*.safetensors`` file of the base folder
  (one digest per file, then one over the sorted ``name:digest`` list). Any changed weight, dtype,
  shape or tensor name changes it. Cost measured on these machines (2 shared AVX2 cores with SHA
  instructions, OpenSSL's SHA-256): 0.25 s for the 269 MB embedded model from the page cache, about
  1.1 GB/s on one core; an 8B model in bf16 (16 GB) about 15 s from the page cache, about what reading
  the weights for the load costs anyway. So that it is cheap on *every* load, each file's digest is
  cached under ``$LORALAB_CACHE/fingerprints/``, one small file per hashed file, keyed by its real path
  and holding (size, mtime in ns, inode) and the digest: a file that was not rewritten costs a ``stat``
  the next time; a rewritten file is hashed again. Each entry is written aside and renamed into place, so
  sweep jobs hashing at the same time never lose each other's entries nor read half an entry.
* ``tokenizer_sha256``: SHA-256 over the tokenizer files (``tokenizer.json``, ``tokenizer.model``,
  ``vocab.json``, ``merges.txt``, ``special_tokens_map.json``, ``added_tokens.json``) and
  ``tokenizer_config.json`` without its ``chat_template`` entry, as canonical JSON where it is JSON.
* ``chat_template_sha256``: SHA-256 of the chat template text (``chat_template.jinja``, else the
  ``chat_template`` entry of ``tokenizer_config.json``); ``None`` for a base without one.
* ``revision``: the hub commit for a folder inside the Hugging Face cache (``.../snapshots/<sha>``).

Hub names are resolved to their local snapshot (no download); a name that is not available locally
gets ``weights_sha256 = None``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from loralab.atomic_file import write_text_aside
from loralab.model.embedded import cache_dir, resolve_model_path
from loralab.params.names import is_embedded

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


def _cache_entry(real: Path) -> Path:
    """The cache file of one hashed file: named by the SHA-256 of its real path."""
    return cache_dir() / "fingerprints" / f"{hashlib.sha256(str(real).encode()).hexdigest()[:40]}.json"


def file_sha256(path: str | Path, use_cache: bool = True) -> str:
    """SHA-256 of a file's bytes, cached under (real path, size, mtime_ns, inode) when ``use_cache``."""
    real = Path(path).resolve()
    if not use_cache:
        return _sha256_file(real)
    stat = real.stat()
    key = f"{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    entry = _cache_entry(real)
    try:
        cached = json.loads(entry.read_text())
        if cached["path"] == str(real) and cached["stat"] == key:
            return cached["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no entry yet, or one left by another loralab: hash again
    digest = _sha256_file(real)
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text_aside(entry, json.dumps({"path": str(real), "stat": key, "sha256": digest}))
    except OSError:
        pass  # a read-only cache only costs speed
    return digest


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


def text_sha256(text: str | None) -> str | None:
    """SHA-256 of a text's UTF-8 bytes (None for None)."""
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
        chat_template_sha256=text_sha256(chat_template_text(folder)),
        seconds=time.perf_counter() - started,
    )


def dataset_sha256(rows: list[dict]) -> str:
    """Digest of rows as canonical JSON (order matters: it is the data the run saw)."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()
