"""Merge an adapter into the weights it was trained against and save a standard 16-bit model folder.

    from loralab.export.merge import merge_adapter
    result = merge_adapter("runs/a/adapter", "runs/a/merged")      # base from the manifest, checked first
    result.merge_into             # "dequantized" for a QLoRA (4-bit) adapter, "original" for a 16-bit one
    result.parity.summary()       # greedy / top-1 / KL against the model as trained, on held-out prompts
    result.max_abs_diff_fp32      # merged (fp32) vs the model as trained (fp32): summation order only
    result.max_abs_diff_saved     # the saved 16-bit folder reloaded vs the model as trained
    merge_adapter(adapter, out, strict=True)           # ExportParityError instead of a warning on drift

**Which weights.** A QLoRA adapter is trained against the *dequantized NF4* weights of its 4-bit base,
not the original 16-bit weights. Merged into the original weights it is a different model: ``make run``'s
adapter (default.yaml: 20 steps at 1e-3) answered 20/20 held-out questions in the JSON shape on its NF4 base but 18/20 on the
16-bit base. So for an adapter whose manifest says ``base_quantization: nf4-4bit``, ``merge_into``
defaults to ``"dequantized"``: the base is loaded in 4-bit exactly as training loaded it
(``loralab.model.loading.load_model``: NF4, double quantization, blocksize 64), every bitsandbytes
``Linear4bit`` weight is dequantized with ``bitsandbytes.functional.dequantize_4bit`` into the 16-bit
model's ``Linear`` weight, and the LoRA update is merged on top. On CPU, bitsandbytes' forward of a
``Linear4bit`` is ``linear(x, dequantize_4bit(W))`` as long as the layer is not repacked for its
AVX512-BF16 kernel, which Unsloth's CPU loader prevents (``support_avx512bf16_for_cpu = False``;
this module sets it again and refuses a repacked weight): measured bit-exact (max |diff| 0.0 on every
one of the embedded model's 210 layers, fp32 and bf16). ``merge_into="original"`` keeps the old
behaviour (merge into the original 16-bit weights) and warns what it costs. A 16-bit-trained adapter
has only ``"original"``.

**A pre-quantized base** (a bitsandbytes 4-bit folder, Unsloth's ``*-bnb-4bit``: what the GPU params files
name) has no original 16-bit weights: ``"dequantized"`` is its only merge (``"original"`` is refused), and the
16-bit model is built from the folder's own NF4 weights, each ``Linear4bit`` replaced by its float32
dequantization one layer at a time (``loralab.model.prequantized.load_dequantized``), after the 4-bit model
used for the reference is gone: the peak is the float32 model the merge works in, as for a 16-bit base.

The merge runs in float32 (W' = W + (alpha/r) * B @ A with PEFT's ``merge_and_unload``) and is saved in
the base's own dtype (bf16 for the embedded model), so the folder loads anywhere with
``AutoModelForCausalLM.from_pretrained`` and needs no PEFT or bitsandbytes. The NF4 values times their
block scales are not all bf16 numbers: saving rounds them (at most 2^-8 relative), which parity sees.

**MergeResult's numbers** compare against *the model as trained*: the adapter on its own 4-bit base
(float32 compute) for a dequantized merge, the adapter on the 16-bit base for a 16-bit one. For
``merge_into="original"`` on a QLoRA adapter they compare with the adapter on the original 16-bit base
(what that merge reproduces), while ``parity`` still compares with the model as trained.

**Parity, by default after every merge** (``loralab.export.parity``): greedy completions, top-1
agreement and KL(trained || exported) on 8 held-out questions of the embedded task x 24 new tokens
(~15-25 s on 2 quiet CPU cores), written to the merged folder's ``loralab_manifest.json`` with the thresholds of
``PARITY_THRESHOLDS["merged-16bit"]``; past them ``ExportDriftWarning`` (and a printed line), or with
``strict=True`` an ``ExportParityError`` and nothing written. Measured on the embedded model with the
QLoRA adapter of ``make run`` (params/01_qlora_finetune/default.yaml; fp32 compute, 8 x 24):

=====================================  ======  =====  ========  =======  ====================
merged into                            greedy  top-1  mean KL   max KL   JSON shape, 20 q.
=====================================  ======  =====  ========  =======  ====================
dequantized NF4 weights (the default)  8/8     1.000  1.3e-5    2.0e-4   20/20 (trained 20/20)
original 16-bit weights                3/8     0.924  4.9e-2    1.07     18/20
=====================================  ======  =====  ========  =======  ====================

(48-token answers to 20 held-out questions: the dequantized merge gave the trained model's answer to
19, the other differing in one digit; the 16-bit merge to 3.)

GGUF: Unsloth's ``save_pretrained_gguf`` raises NotImplementedError on its CPU backend and on a GPU
it builds llama.cpp to convert. ``loralab.export.gguf_export`` converts the merged folder with
llama.cpp's own tools and checks every file in llama.cpp; ``GGUF_STATUS`` is the sentence notebooks print.
"""

from __future__ import annotations

import gc
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loralab.adapters.as_trained import dequantize_into, load_4bit_base, saved_16bit_dtype
from loralab.adapters.manifest import Manifest
from loralab.atomic_folder import folder_written_aside
from loralab.export.parity import (
    DEFAULT_NEW_TOKENS,
    DEFAULT_PROMPTS,
    ExportDriftWarning,
    ParityReference,
    ParityReport,
    ParityThresholds,
    compare_with_reference,
    heldout_questions,
    parity_prompts,
    record_reference,
)

GGUF_STATUS = (
    "GGUF: loralab.export.gguf_export.export_for_llama_cpp writes F16 and quantized GGUF files (Q8_0, Q5_K_M, "
    "Q4_K_M...) with llama.cpp's own converter and quantizer (llama-cpp-python, built by `make setup-gguf`), optionally the "
    "adapter as a GGUF LoRA, and an Ollama Modelfile; each file is run in llama.cpp and compared with the model as "
    "trained. Unsloth's save_pretrained_gguf raises NotImplementedError on its CPU backend."
)
MERGE_INTO = ("dequantized", "original")
ORIGINAL_COST = (
    "the merged model differs from what was trained by the NF4 quantization error (the adapter was trained "
    "against the dequantized 4-bit weights; on the embedded task `make run`'s adapter (default.yaml: 20 steps at 1e-3) answered 20/20 "
    "held-out questions in the JSON shape on its NF4 base, 18/20 on the original 16-bit weights)")


@dataclass
class MergeResult:
    """Where the merged folder is and how closely it reproduces the model as trained."""

    path: Path
    saved_dtype: str
    max_abs_diff_fp32: float  # merged fp32 vs the reference (see ``reference``), on the probe prompt
    max_abs_diff_saved: float  # saved 16-bit folder reloaded vs the reference
    adapter_effect: float  # max |reference - its base| on the probe: the scale the diffs are small against
    argmax_agreement_saved: float  # share of probe positions whose top token is the same
    folder_bytes: int
    merge_into: str = "original"  # "dequantized": into the NF4-dequantized weights; "original": the 16-bit ones
    base_quantization: str = "16-bit"  # what the adapter was trained on (its manifest)
    reference: str = ""  # what the max_abs_diff_* fields compare against
    dequantized_layers: int = 0  # Linear4bit weights written into the 16-bit model
    dequantized_base_max_abs_diff: float | None = None  # 16-bit model with those weights vs the 4-bit base
    parity: ParityReport | None = None  # against the model as trained; None with parity=False
    seconds: float = 0.0
    # what the model as trained did on the parity prompts: GGUF exports of this folder compare with it too
    parity_reference: ParityReference | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, the path as text and the parity report as a dict."""
        out = {k: v for k, v in vars(self).items() if k not in ("path", "parity", "parity_reference")}
        out["path"] = str(self.path)
        out["parity"] = self.parity.as_dict() if self.parity is not None else None
        return out

    def summary(self) -> str:
        """Two lines for a notebook: what was merged into what, and the parity numbers."""
        lines = [(f"merged into the {self.merge_into} weights (adapter trained on a {self.base_quantization} base), "
                  f"saved {self.saved_dtype}: {self.path} ({self.folder_bytes / 1e6:.0f} MB)")]
        if self.parity is not None:
            verdict = "within" if self.parity.passed else "PAST"
            lines.append(f"{self.parity.summary()}; {verdict} its thresholds")
        return "\n".join(lines)


def _probe(model, tokenizer):
    from loralab.adapters.save import probe_logits

    return probe_logits(model, tokenizer)[1]


def _resolve_merge_into(merge_into: str | None, manifest: Manifest | None, adapter_dir: Path,
                        prequantized: str | None = None) -> str:
    """The weights to merge into; an adapter without a manifest merges into the original ones unless told.
    ``prequantized``: the base, when it is a pre-quantized bnb-4bit folder (its NF4 weights are the only ones)."""
    trained_4bit = (manifest is not None and manifest.load_in_4bit) or prequantized is not None
    if merge_into is None:
        return "dequantized" if trained_4bit else "original"
    if merge_into not in MERGE_INTO:
        raise ValueError(f"merge_into={merge_into!r}: write 'dequantized' (the NF4-dequantized weights a QLoRA "
                         "adapter was trained against) or 'original' (the base's 16-bit weights).")
    if merge_into == "original" and prequantized is not None:
        raise ValueError(f"merge_into='original': the base {prequantized} is pre-quantized (bitsandbytes 4-bit) and "
                         "holds no original 16-bit weights; merge_into='dequantized' (the default) merges into its "
                         "NF4 weights, the ones the adapter was trained against.")
    if merge_into == "dequantized" and manifest is not None and not trained_4bit:
        raise ValueError(f"merge_into='dequantized': {adapter_dir} was trained on a 16-bit base (its manifest says "
                         "so), so its weights are the original ones; only merge_into='original' applies.")
    return merge_into


def _merged_manifest(adapter_dir: Path, manifest: Manifest | None, base_model: str, merge: dict[str, Any],
                     parity: ParityReport | None, folder: Path) -> Path:
    return Manifest.for_merged(folder, adapter_dir, manifest, base_model, merge,
                               parity.as_dict() if parity is not None else None).write(folder)


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None,
                  allow_base_mismatch: bool = False, merge_into: Literal["dequantized", "original"] | None = None,
                  parity: bool = True, strict: bool = False, parity_prompts_n: int = DEFAULT_PROMPTS,
                  parity_new_tokens: int = DEFAULT_NEW_TOKENS, parity_messages: list[list[dict]] | None = None,
                  parity_thresholds: ParityThresholds | None = None) -> MergeResult:
    """Verify, merge in fp32 into the weights the adapter was trained against, save 16-bit, check parity.

    ``merge_into`` defaults to ``"dequantized"`` for an adapter trained on a 4-bit base (its manifest says),
    ``"original"`` otherwise. ``parity`` compares the saved folder with the model as trained on
    ``parity_prompts_n`` held-out questions (or ``parity_messages``) x ``parity_new_tokens`` tokens and writes
    the numbers into the folder's manifest; past the thresholds (``parity_thresholds``, default
    ``PARITY_THRESHOLDS["merged-16bit"]``) it warns, or with ``strict`` raises ``ExportParityError`` and
    leaves ``out_dir`` as it was. An adapter without a manifest merges into the original weights unless
    ``merge_into="dequantized"`` says it was trained on a 4-bit base (Unsloth's NF4 settings are assumed).
    """
    import torch
    import unsloth  # noqa: F401
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from loralab.adapters.verified_loading import check_adapter_base
    from loralab.model.fingerprints import local_model_folder
    from loralab.model.prequantized import load_dequantized, prequantized_4bit

    started = time.perf_counter()
    hf_logging.disable_progress_bar()  # no per-tensor bars in notebooks and logs
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    check = check_adapter_base(adapter_dir, base_model, allow_base_mismatch=allow_base_mismatch)
    folder = local_model_folder(check.base_model)
    if folder is None:
        raise ValueError(f"the base {check.base_model} is not available locally; download it first.")
    prequantized = prequantized_4bit(folder)  # a bnb-4bit folder: its NF4 weights are the only ones
    merge_into = _resolve_merge_into(merge_into, check.manifest, adapter_dir,
                                     check.base_model if prequantized else None)
    base_quantization = check.base_quantization
    if prequantized and not base_quantization.startswith("nf4"):
        base_quantization = "nf4-4bit (a pre-quantized base)"
    if check.manifest is None and merge_into == "dequantized" and not prequantized:
        base_quantization = "nf4-4bit (told by merge_into; no manifest)"  # Unsloth's NF4 settings are assumed
    trained_4bit = base_quantization.startswith("nf4")
    if merge_into == "original" and trained_4bit:
        warnings.warn(f"merge_into='original' for {adapter_dir}: {ORIGINAL_COST}. merge_into='dequantized' (the "
                      "default) reproduces the trained model.", ExportDriftWarning, stacklevel=2)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    # a pre-quantized base is dequantized from its own folder below, after the 4-bit model is gone
    base = None if prequantized else AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, use_safetensors=True).eval()
    saved_dtype = saved_16bit_dtype(folder)  # "16-bit folder": fp32 (and 4-bit) bases are saved as bf16
    chats = (parity_messages or heldout_questions(parity_prompts_n)) if parity else []
    prompts = parity_prompts(tokenizer, messages=chats) if parity else None
    questions = [chat[-1]["content"] for chat in chats]

    reference = None
    dequantized_layers, dequantized_diff = 0, None
    if trained_4bit and (merge_into == "dequantized" or parity):  # the model as trained: adapter on its 4-bit base
        quantized = load_4bit_base(check.base_model, check.max_seq_length)
        if merge_into == "dequantized" and not prequantized:
            dequantized_layers = dequantize_into(quantized, base)
            if dequantized_layers == 0:
                raise RuntimeError(f"the 4-bit load of {check.base_model} has no bitsandbytes Linear4bit layer; "
                                   "nothing to dequantize (is bitsandbytes' CPU backend available?).")
        quantized_logits = _probe(quantized, tokenizer)
        trained = PeftModel.from_pretrained(quantized, str(adapter_dir), is_trainable=False).eval()
        trained_logits = _probe(trained, tokenizer)
        if parity:
            reference = record_reference(trained, tokenizer, prompts, parity_new_tokens, questions)
        del trained, quantized
        gc.collect()
    if prequantized:  # the folder's own NF4 weights, dequantized into float32 one layer at a time
        base, dequantized_layers = load_dequantized(folder, torch.float32)

    base_logits = _probe(base, tokenizer)
    if merge_into == "dequantized":
        dequantized_diff = (base_logits - quantized_logits).abs().max().item()
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False).eval()
    if merge_into == "dequantized":
        unmerged, effect_base = trained_logits, quantized_logits
        reference_text = "the adapter on its own 4-bit NF4 base (fp32 compute): the model as trained"
    else:
        unmerged, effect_base = _probe(model, tokenizer), base_logits
        if trained_4bit:
            reference_text = ("the adapter on the original 16-bit base (fp32), NOT the model as trained (its 4-bit "
                              "base): parity compares with that")
        else:
            reference_text = "the adapter on its 16-bit base (fp32): the model as trained"
            if parity:
                reference = record_reference(model, tokenizer, prompts, parity_new_tokens, questions)
    merged = model.merge_and_unload()
    merged_logits = _probe(merged, tokenizer)

    report = None
    with folder_written_aside(out_dir) as staging:
        merged.to(saved_dtype).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        del merged, model, base
        gc.collect()
        reloaded = AutoModelForCausalLM.from_pretrained(str(staging), dtype=torch.float32, use_safetensors=True).eval()
        saved_logits = _probe(reloaded, tokenizer)
        if reference is not None:
            report = compare_with_reference(reference, reloaded, "merged-16bit", parity_thresholds, tokenizer)
        del reloaded
        result = MergeResult(
            path=out_dir,
            saved_dtype=str(saved_dtype).removeprefix("torch."),
            max_abs_diff_fp32=(merged_logits - unmerged).abs().max().item(),
            max_abs_diff_saved=(saved_logits - unmerged).abs().max().item(),
            adapter_effect=(unmerged - effect_base).abs().max().item(),
            argmax_agreement_saved=(saved_logits.argmax(-1) == unmerged.argmax(-1)).float().mean().item(),
            folder_bytes=0,
            merge_into=merge_into,
            base_quantization=base_quantization,
            reference=reference_text,
            dequantized_layers=dequantized_layers,
            dequantized_base_max_abs_diff=dequantized_diff,
            parity=report,
            parity_reference=reference,
        )
        advice = ("Use merge_into='dequantized' (the default for a 4-bit-trained adapter)."
                  if merge_into == "original" and trained_4bit else
                  "Check the base (same weights as training?) and the saved dtype; serve the adapter unmerged on its "
                  "own base if the drift matters.")
        if report is not None and strict:
            report.check(strict=True, what=f"the merged model for {adapter_dir}",
                         advice=f"{advice} Nothing was written to {out_dir}; strict=False keeps the folder and "
                                "records the numbers in its manifest.")
        record = {k: v for k, v in vars(result).items()
                  if k not in ("path", "parity", "folder_bytes", "seconds", "parity_reference")}
        _merged_manifest(adapter_dir, check.manifest, check.base_model, record, report, staging)
    result.folder_bytes = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    result.seconds = time.perf_counter() - started
    if report is not None:
        report.check(strict=False, what=f"the merged model {out_dir}", advice=advice)
    return result
