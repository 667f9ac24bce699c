"""Merge an adapter into its 16-bit base and save a standard model folder; check the logits match.

    from loralab.adapters.merge import merge_adapter
    result = merge_adapter("runs/a/adapter", "runs/a/merged")      # base from the manifest, checked first
    result.max_abs_diff_fp32      # merged (fp32) vs base + adapter (fp32): summation order only
    result.max_abs_diff_saved     # the saved 16-bit folder reloaded vs base + adapter (fp32)

The merge runs in float32 (W' = W + (alpha/r) * B @ A, exact up to rounding) with PEFT's
``merge_and_unload`` and is saved in the base's own dtype (bf16 for the embedded model), so the
folder loads anywhere with ``AutoModelForCausalLM.from_pretrained`` and needs no PEFT. An adapter
trained on a 4-bit (QLoRA) base is merged into the 16-bit base: the merged model then differs from
what was trained by the NF4 quantization error, which is why ``max_abs_diff_*`` is measured against
base + adapter on the same 16-bit base.

GGUF: Unsloth's ``save_pretrained_gguf`` raises NotImplementedError on its CPU backend and on a GPU
it builds llama.cpp to convert. ``loralab.adapters.gguf`` writes a GGUF from the merged folder with the
PyPI ``gguf`` package alone, for Llama-architecture models with a byte-level BPE tokenizer; see
``GGUF_STATUS`` for the sentence notebooks print.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from loralab.atomic_folder import folder_written_aside

GGUF_STATUS = (
    "GGUF: loralab.adapters.gguf writes F32/F16/Q8_0 GGUF files with the PyPI 'gguf' package for Llama-architecture "
    "models with a byte-level BPE tokenizer (SmolLM2, TinyLlama, Llama 2/3 without rope scaling) and checks them by "
    "reading them back with transformers; llama.cpp itself is not run here. Other architectures, SentencePiece "
    "tokenizers and K-quants (Q4_K_M...) need llama.cpp (convert_hf_to_gguf.py, llama-quantize); Unsloth's "
    "save_pretrained_gguf raises NotImplementedError on CPU and builds llama.cpp on a GPU."
)


@dataclass
class MergeResult:
    """Where the merged folder is and how closely it reproduces base + adapter."""

    path: Path
    saved_dtype: str
    max_abs_diff_fp32: float  # merged fp32 vs unmerged fp32, on the probe prompt
    max_abs_diff_saved: float  # saved 16-bit folder reloaded vs unmerged fp32
    adapter_effect: float  # max |base+adapter - base| on the probe: the scale the diffs are small against
    argmax_agreement_saved: float  # share of positions whose top token is the same
    folder_bytes: int


def _probe(model, tokenizer):
    from loralab.adapters.save import probe_logits

    return probe_logits(model, tokenizer)[1]


def merge_adapter(adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None,
                  allow_base_mismatch: bool = False) -> MergeResult:
    """Verify, merge in fp32, save in the base's dtype to ``out_dir`` and measure the logits difference."""
    import torch
    import unsloth  # noqa: F401
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from loralab.adapters.manifest import local_model_folder
    from loralab.adapters.verified_loading import check_adapter_base

    hf_logging.disable_progress_bar()  # no per-tensor bars in notebooks and logs
    check = check_adapter_base(adapter_dir, base_model, load_in_4bit=False, allow_base_mismatch=allow_base_mismatch)
    folder = local_model_folder(check.base_model)
    if folder is None:
        raise ValueError(f"the base {check.base_model} is not available locally; download it first.")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, use_safetensors=True)
    on_disk = json.loads((folder / "config.json").read_text())
    saved_dtype = getattr(torch, str(on_disk.get("dtype") or on_disk.get("torch_dtype") or "bfloat16"))
    if saved_dtype not in (torch.float16, torch.bfloat16):
        saved_dtype = torch.bfloat16  # "16-bit folder": fp32 bases are saved as bf16 too
    base.eval()
    base_logits = _probe(base, tokenizer)
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    unmerged = _probe(model, tokenizer)
    merged = model.merge_and_unload()
    merged_logits = _probe(merged, tokenizer)

    out_dir = Path(out_dir)
    with folder_written_aside(out_dir) as staging:
        merged.to(saved_dtype).save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    del merged, model, base
    reloaded = AutoModelForCausalLM.from_pretrained(str(out_dir), dtype=torch.float32, use_safetensors=True)
    reloaded.eval()
    saved_logits = _probe(reloaded, tokenizer)
    del reloaded
    return MergeResult(
        path=out_dir,
        saved_dtype=str(saved_dtype).removeprefix("torch."),
        max_abs_diff_fp32=(merged_logits - unmerged).abs().max().item(),
        max_abs_diff_saved=(saved_logits - unmerged).abs().max().item(),
        adapter_effect=(unmerged - base_logits).abs().max().item(),
        argmax_agreement_saved=(saved_logits.argmax(-1) == unmerged.argmax(-1)).float().mean().item(),
        folder_bytes=sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file()),
    )
