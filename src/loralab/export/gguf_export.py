"""Export a merged model for llama.cpp and Ollama, each file parity-checked in llama.cpp itself.

    from loralab.export.gguf_export import export_for_llama_cpp
    merged = merge_adapter("runs/a/adapter", "runs/a/merged")
    export = export_for_llama_cpp(merged, "runs/a/gguf", out_types=("q8_0", "q4_k_m"), lora=True,
                                  score=embedded_task_scores)     # loralab.eval.token_model_scores
    print(export.summary())          # one line per file: size, tensor types, parity, task score
    export.modelfile.path            # runs/a/gguf/Modelfile (FROM the first of out_types)

What it writes into ``out_dir`` (everything through llama.cpp's own tools, ``loralab.export.gguf``):

* ``<name>.F16.gguf`` and one file per ``out_types`` entry (``Q8_0``, ``Q5_K_M``, ``Q4_K_M``...);
* with ``lora=True``: the adapter as a GGUF LoRA (``adapter.F16.gguf``) and the base it goes with
  (``base.F16.gguf``: for a QLoRA adapter the dequantized NF4 weights it was trained against), what
  llama.cpp's server runs as ``llama-server -m base.F16.gguf --lora adapter.F16.gguf``;
* ``Modelfile`` for Ollama (``loralab.export.ollama``, its TEMPLATE checked against the chat template, its
  stops against the end-of-turn token training supervised: the manifest's ``training_end_of_turn_token``;
  a Modelfile that would not stop on it is refused before any conversion, a GGUF whose end-of-sequence
  token is another one is warned about in one line);
* ``loralab_manifest.json``: per file its size, SHA-256-free summary of tensor types, the parity report
  against the model as trained (``loralab.export.parity``, thresholds ``PARITY_THRESHOLDS["gguf-..."]``)
  and, with ``score`` (a function of a ``TokenModel`` and the tokenizer, such as
  ``loralab.eval.token_model_scores.embedded_task_scores``), the scores of its answers in llama.cpp.

Parity compares with the model as trained: the merge's own reference when a ``MergeResult`` is given
(no extra model load), else the adapter named in the merged folder's manifest, loaded on its own base.
A file past its thresholds is reported loudly (``ExportDriftWarning``); ``strict=True`` raises
``ExportParityError`` and leaves ``out_dir`` as it was.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loralab.adapters.manifest import BaseRecord, Manifest, MergedFrom, read_manifest
from loralab.export.gguf import FILE_SUFFIX, export_gguf, export_gguf_lora, quantize_gguf
from loralab.export.gguf_header import gguf_tensor_types
from loralab.export.parity import ParityReference, ParityReport, compare_with_reference, record_reference

DEFAULT_TYPES = ("q8_0", "q4_k_m")


@dataclass
class GGUFFile:
    """One exported file and how it behaves in llama.cpp."""

    kind: str  # "merged", "lora" (base + GGUF LoRA)
    out_type: str
    path: Path
    bytes: int
    tensor_types: dict[str, int]
    parity: ParityReport | None = None
    scores: dict[str, float] = field(default_factory=dict)
    lora_path: Path | None = None

    @property
    def format(self) -> str:
        return f"gguf-lora-{self.out_type}" if self.kind == "lora" else f"gguf-{self.out_type}"

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k not in ("parity", "path", "lora_path")}
        out.update(path=self.path.name, lora_path=self.lora_path.name if self.lora_path else None, format=self.format,
                   parity=self.parity.as_dict() if self.parity else None)
        return out

    def summary(self) -> str:
        what = f"{self.path.name} + {self.lora_path.name}" if self.lora_path else self.path.name
        parity = f"; {self.parity.summary()}; {'within' if self.parity.passed else 'PAST'} its thresholds" \
            if self.parity else ""
        scores = ", ".join(f"{k} {v:.2f}" for k, v in self.scores.items())
        return f"{what}: {self.bytes / 1e6:.0f} MB {self.tensor_types}{parity}" + (f"; {scores}" if scores else "")


@dataclass
class GGUFExport:
    """Everything ``export_for_llama_cpp`` wrote, with its checks."""

    folder: Path
    files: list[GGUFFile]
    modelfile: Any = None  # loralab.export.ollama.ModelfileCheck
    seconds: float = 0.0
    reference: ParityReference | None = field(default=None, repr=False)  # the model as trained, compared with

    def summary(self) -> str:
        lines = [f.summary() for f in self.files]
        if self.modelfile is not None:
            lines.append(f"{self.modelfile.path.name}: FROM {self.modelfile.gguf_file}, {self.modelfile.family} "
                         f"TEMPLATE checked on {self.modelfile.checked_conversations} conversations, stops "
                         f"{self.modelfile.stops}")
        return "\n".join(lines)

    def table(self) -> list[dict[str, Any]]:
        """One row per file: format, MB, greedy, top-1, mean KL, JSON shape, passed."""
        return [{"format": f.format, "MB": round(f.bytes / 1e6), "greedy": f.parity.greedy_agreement if f.parity else None,
                 "top1": f.parity.top1_agreement if f.parity else None, "mean_kl": f.parity.mean_kl if f.parity else None,
                 "json_shape": f.scores.get("json_shape"), "passed": f.parity.passed if f.parity else None}
                for f in self.files]


def _reference_for(merged, tokenizer, parity: bool) -> tuple[Path, ParityReference | None, Manifest | None]:
    """The merged folder, the model as trained's parity reference (None without ``parity``), its manifest."""
    from loralab.adapters.as_trained import load_as_trained

    path = Path(getattr(merged, "path", merged))
    manifest = read_manifest(path)
    reference = getattr(merged, "parity_reference", None) if parity else None
    if parity and reference is None:
        adapter_dir = manifest.merged_from.adapter_dir if manifest and manifest.merged_from else None
        if adapter_dir and Path(adapter_dir).is_dir():
            trained, _ = load_as_trained(adapter_dir)
            reference = record_reference(trained, tokenizer)
            del trained
    return path, reference, manifest


def gguf_lora_refusal(adapter_config: dict[str, Any]) -> str | None:
    """Why llama.cpp cannot apply this adapter as a GGUF LoRA (None: it can).

    llama.cpp's ``convert_lora_to_gguf.py`` writes A, B and ``lora_alpha``, and llama.cpp scales the update
    by alpha/r: DoRA's magnitude vectors have no place there, and an rsLoRA adapter (alpha/sqrt(r)) would be
    applied at the wrong scale. A PiSSA/OLoRA adapter is saved converted to plain LoRA (``save_adapter``) and
    is fine; one that was not converted needs its residual base, which no GGUF file holds.
    """
    init = str(adapter_config.get("init_lora_weights", True)).lower()
    reason = ("DoRA (its magnitude vectors)" if adapter_config.get("use_dora") else
              "rsLoRA (scale alpha/sqrt(r); llama.cpp scales a LoRA by alpha/r)" if adapter_config.get("use_rslora") else
              f"{init} (not converted to plain LoRA: it needs its residual base)"
              if init.startswith(("pissa", "olora")) else None)
    if reason is None:
        return None
    return (f"llama.cpp cannot apply a {reason} adapter as a GGUF LoRA: export with lora=False; the merged "
            "model's GGUF files (F16, Q8_0, ...) hold the whole update")


def check_gguf_lora_variant(adapter_dir: str | Path) -> None:
    """Raise ValueError (one line, the merged-model GGUF offered instead) for a variant llama.cpp cannot apply."""
    refusal = gguf_lora_refusal(json.loads((Path(adapter_dir) / "adapter_config.json").read_text()))
    if refusal:
        raise ValueError(f"{adapter_dir}: {refusal}.")


def _merged_from(merged_dir: Path) -> str | None:
    """The adapter folder a merged folder's manifest names (None without one)."""
    manifest = read_manifest(merged_dir)
    return manifest.merged_from.adapter_dir if manifest and manifest.merged_from else None


def trained_end_of_turn(merged_dir: str | Path) -> str | None:
    """The end-of-turn token training supervised: the merged folder's manifest, else its adapter's (None: unknown)."""
    merged = read_manifest(merged_dir)
    if merged and merged.training_end_of_turn_token:
        return merged.training_end_of_turn_token
    adapter_dir = merged.merged_from.adapter_dir if merged and merged.merged_from else None
    adapter = read_manifest(adapter_dir) if adapter_dir and Path(adapter_dir).is_dir() else None
    return adapter.training_end_of_turn_token if adapter else None


def check_export_stop(trained_end: str | None, tokenizer, modelfile: bool = True) -> None:
    """Refuse (``ModelfileError``) a Modelfile that would not stop on the token training supervised; warn in one
    line when the GGUF's end-of-sequence token (the tokenizer's eos, where llama.cpp stops) is another one."""
    import warnings

    if trained_end is None:
        return
    if modelfile:
        from loralab.export.ollama import check_trained_stop, template_family

        check_trained_stop(trained_end, template_family(tokenizer.chat_template).stops)
    if tokenizer.eos_token != trained_end:
        message = (f"training ended each answer with {trained_end!r}, but the GGUF's end-of-sequence token is "
                   f"{tokenizer.eos_token!r}: llama.cpp may not stop after an answer unless it treats "
                   f"{trained_end!r} as end of generation too; pass it as a stop string.")
        warnings.warn(message, stacklevel=3)
        print(f"WARNING: {message}")


def export_for_llama_cpp(merged, out_dir: str | Path, out_types: tuple[str, ...] = DEFAULT_TYPES, lora: bool = False,
                         adapter_dir: str | Path | None = None, modelfile: bool = True, parity: bool = True,
                         strict: bool = False, score: Callable[[Any, Any], dict[str, float]] | None = None,
                         name: str = "model") -> GGUFExport:
    """Write GGUF files (F16 + ``out_types``), optionally a GGUF LoRA, and a Modelfile; check each in llama.cpp.

    ``merged`` is a ``MergeResult`` or a merged folder. ``adapter_dir`` (default: the merged folder's
    manifest) is needed for ``lora``. ``score(token_model, tokenizer)`` is called on each file run in
    llama.cpp (None: no score). Without llama.cpp's tools (``make setup-gguf``) it raises ``LlamaCppMissing``
    before anything loads.
    """
    import gc
    import warnings

    from transformers import AutoTokenizer

    from loralab.export.gguf_runtime import LlamaCppTokenModel
    from loralab.export.ollama import GO_MISSING, go_command, write_modelfile
    from loralab.export.parity import ExportDriftWarning, ExportParityError

    started = time.perf_counter()
    out_dir = Path(out_dir)
    merged_dir = Path(getattr(merged, "path", merged))
    if not (merged_dir / "config.json").is_file() or not (merged_dir / "tokenizer_config.json").is_file():
        from loralab.export.gguf import GGUFExportError

        raise GGUFExportError(f"{merged_dir} is not a merged model folder (config.json and tokenizer files); pass the "
                              "MergeResult or the folder merge_adapter wrote.")
    if lora:  # before llama.cpp or any model: a variant it cannot apply is refused in one line
        named = adapter_dir or _merged_from(merged_dir)
        if named and (Path(named) / "adapter_config.json").is_file():
            check_gguf_lora_variant(named)
    from loralab.export.llama_cpp_setup import llama_cpp_tools

    llama_cpp_tools()  # LlamaCppMissing (one line: what to run) before any tokenizer or model loads
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    trained_end = trained_end_of_turn(merged_dir)
    check_export_stop(trained_end, tokenizer, modelfile)  # before any conversion: one line if they disagree
    merged_dir, reference, manifest = _reference_for(merged, tokenizer, parity)
    if parity and reference is None:
        raise ValueError(f"parity needs the model as trained: {merged_dir} names no adapter that is still there; "
                         "pass the MergeResult, or parity=False.")
    adapter_dir = Path(adapter_dir or _merged_from(merged_dir) or "")
    if lora and not (adapter_dir / "adapter_config.json").is_file():
        raise ValueError("lora=True needs the adapter folder (adapter_dir=...).")
    if lora:
        check_gguf_lora_variant(adapter_dir)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        f16 = export_gguf(merged_dir, staging / f"{name}.F16.gguf", "f16")
        entries = [GGUFFile("merged", "f16", f16, 0, {})]
        for out_type in out_types:
            if out_type != "f16":
                path = quantize_gguf(f16, staging / f"{name}.{FILE_SUFFIX[out_type]}.gguf", out_type)
                entries.append(GGUFFile("merged", out_type, path, 0, {}))
        if lora:
            from loralab.adapters.as_trained import save_dequantized_base

            base_dir = save_dequantized_base(adapter_dir, staging / "base-hf")
            base = export_gguf(base_dir, staging / "base.F16.gguf", "f16")
            adapter = export_gguf_lora(adapter_dir, staging / "adapter.F16.gguf", base_dir)
            shutil.rmtree(base_dir)
            entries.append(GGUFFile("lora", "f16", base, 0, {}, lora_path=adapter))
        for entry in entries:
            entry.bytes = entry.path.stat().st_size + (entry.lora_path.stat().st_size if entry.lora_path else 0)
            entry.tensor_types = gguf_tensor_types(entry.lora_path or entry.path)
            if parity or score is not None:
                runner = LlamaCppTokenModel(entry.path, lora_path=entry.lora_path)
                if parity:
                    entry.parity = compare_with_reference(reference, runner, entry.format, tokenizer=tokenizer)
                if score is not None:
                    entry.scores = score(runner, tokenizer)
                runner.close()
                del runner
                gc.collect()
        failed = [e for e in entries if e.parity is not None and not e.parity.passed]
        if strict and failed:
            raise ExportParityError("; ".join(f"{e.path.name}: {', '.join(e.parity.failures)}" for e in failed)
                                    + f". Nothing was written to {out_dir}.")
        check = None
        if modelfile:
            first = next((e for e in entries if e.kind == "merged" and e.out_type == (out_types or ("f16",))[0]),
                         entries[0])
            have_go = go_command() is not None
            if not have_go:
                print(f"Modelfile written without its TEMPLATE check: {GO_MISSING}.")
            check = write_modelfile(first.path, tokenizer, staging / "Modelfile", check=have_go,
                                    trained_end_of_turn=trained_end)
        Manifest(kind="gguf-export", base=manifest.base if manifest else BaseRecord(),
                 base_quantization=manifest.base_quantization if manifest else "16-bit",
                 training_end_of_turn_token=trained_end, merged_from=MergedFrom(merged_dir=str(merged_dir.resolve())),
                 merge_into=(manifest.merge or {}).get("merge_into") if manifest else None,
                 files=[e.as_dict() for e in entries],
                 modelfile={k: v for k, v in asdict(check).items() if k != "path"} if check else None).write(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for entry in entries:  # paths now in out_dir
        entry.path = out_dir / entry.path.name
        entry.lora_path = out_dir / entry.lora_path.name if entry.lora_path else None
    if check is not None:
        check.path = out_dir / "Modelfile"
    for entry in entries:
        if entry.parity is not None and not entry.parity.passed:
            message = f"{entry.path.name} drifted from the model as trained: {'; '.join(entry.parity.failures)}. " \
                      f"{entry.parity.summary()}"
            warnings.warn(message, ExportDriftWarning, stacklevel=2)
            print(f"WARNING: {message}")
    return GGUFExport(out_dir, entries, check, time.perf_counter() - started, reference)
