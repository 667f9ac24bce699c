"""GGUF files through llama.cpp's own tools: its converter, its quantizer (K-quants) and its LoRA converter.

    from loralab.export.gguf import export_gguf, export_gguf_lora
    path = export_gguf("runs/a/merged-json", "runs/a/merged-json.Q4_K_M.gguf", out_type="q4_k_m")
    lora = export_gguf_lora("runs/a/adapter", "runs/a/adapter.f16.gguf", base_dir="runs/a/base-dequantized")

``export_gguf`` runs llama.cpp's ``convert_hf_to_gguf.py`` on a 16/32-bit Hugging Face folder (a merged
model) -- every architecture that converter knows, Llama, Qwen2, Mistral, Gemma 2/3 and Phi-3 among
them; anything else is refused, before any work, with the reason -- and writes F32/F16/BF16/Q8_0
directly. K-quants (Q4_K_M, Q5_K_M, Q6_K) and Q4_0 are made from the F16 file by llama.cpp's
``llama_model_quantize`` (llama-cpp-python), as ``llama-quantize`` would. A tensor whose rows are not
a multiple of 256 values cannot be K-quantized; llama.cpp then picks a fallback type for it (the
embedded model's 576-wide layers get Q5_0/Q8_0/Q6_K fallbacks, so its "Q4_K_M" is not 4.8 bits a
weight); ``loralab.export.gguf_header.gguf_tensor_types`` says what each file holds.

``export_gguf_lora`` runs ``convert_lora_to_gguf.py``: the adapter as a GGUF LoRA that llama.cpp's
server loads next to a base GGUF (``--lora``) and can hot-swap. ``base_dir`` is the Hugging Face folder
of the base the adapter goes with (its config and tokenizer; for a QLoRA adapter, the dequantized NF4
base, see ``loralab.export.merge.save_dequantized_base``).

Everything is written aside and renamed into place, so a failed conversion leaves no partial file.
llama.cpp's tools are installed by ``python -m loralab.export.llama_cpp_setup`` (``make setup-gguf``).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from loralab.params.runtime_check import thread_budget

if TYPE_CHECKING:
    from loralab.export.llama_cpp_setup import LlamaCppTools

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")  # convert_hf_to_gguf.py --outtype
QUANTIZED_TYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}  # llama_ftype, llama.h
OUT_TYPES = tuple(dict.fromkeys((*CONVERTER_TYPES, *QUANTIZED_TYPES)))
FILE_SUFFIX = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k_m": "Q4_K_M",
               "q5_k_m": "Q5_K_M", "q6_k": "Q6_K"}


class GGUFExportError(ValueError):
    """A model or adapter llama.cpp cannot convert (the message says why), or a conversion that failed."""


def converter_architectures(tools: LlamaCppTools | None = None) -> set[str]:
    """Hugging Face architecture names llama.cpp's converter has a class for (its ``TEXT_MODEL_MAP``)."""
    from loralab.export.llama_cpp_setup import llama_cpp_tools

    tools = tools or llama_cpp_tools()
    source = (tools.folder / "conversion" / "__init__.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign)
                                                                       else None)
        if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP":
            return set(ast.literal_eval(node.value))
    raise GGUFExportError(f"{tools.folder}: llama.cpp's converter has no TEXT_MODEL_MAP; run the setup again.")


def check_convertible(model_dir: Path, tools: LlamaCppTools) -> str:
    """The folder's architecture when llama.cpp can convert it; ``GGUFExportError`` saying why not otherwise."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise GGUFExportError(f"{model_dir} has no config.json: export_gguf needs a Hugging Face model folder "
                              "(for an adapter, merge it first with merge_adapter, or use export_gguf_lora).")
    config = json.loads(config_file.read_text())
    if config.get("quantization_config"):
        method = config["quantization_config"].get("quant_method", "?")
        raise GGUFExportError(f"{model_dir} is quantized ({method}); convert a 16-bit folder (merge_adapter writes one).")
    architectures = config.get("architectures") or []
    if not architectures:
        raise GGUFExportError(f"{model_dir}/config.json names no architecture; llama.cpp's converter picks its "
                              "conversion by the 'architectures' entry.")
    if architectures[0] not in converter_architectures(tools):
        raise GGUFExportError(f"{model_dir} is a {architectures[0]}: llama.cpp's converter (llama-cpp-python "
                              f"{tools.version}) has no conversion for that architecture, so no GGUF can be written.")
    if not any(model_dir.glob("*.safetensors")) and not any(model_dir.glob("*.bin")):
        raise GGUFExportError(f"{model_dir} has no weights (*.safetensors).")
    return architectures[0]


def _run_converter(script: Path, args: list[str], what: str) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env.pop("NO_LOCAL_GGUF", None)  # the converter then uses the gguf-py it was written against (its own folder)
    done = subprocess.run([sys.executable, str(script), *args], check=False, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise GGUFExportError(f"llama.cpp's {script.name} could not convert {what}:\n{tail}")


def _aside(out_path: Path) -> Path:
    return out_path.with_name(f".{out_path.name}.partial")


def quantize_gguf(source: str | Path, out_path: str | Path, out_type: str, threads: int = 0) -> Path:
    """Quantize a F16/F32 GGUF with llama.cpp's ``llama_model_quantize`` (``out_type`` in ``QUANTIZED_TYPES``),
    with ``threads`` threads (0: ``loralab.params.runtime_check.thread_budget()``).

    It runs in a child Python so that llama.cpp's per-tensor log (written by C to the process's stderr)
    stays out of notebooks; the lines that say which tensors took a fallback type are kept on failure.
    """
    source, out_path = Path(source), Path(out_path)
    if out_type not in QUANTIZED_TYPES:
        raise GGUFExportError(f"out_type {out_type!r}: quantize to one of {sorted(QUANTIZED_TYPES)}.")
    partial = _aside(out_path)
    code = ("import sys, llama_cpp\n"
            "p = llama_cpp.llama_model_quantize_default_params()\n"
            "p.ftype, p.nthread = int(sys.argv[3]), int(sys.argv[4])\n"
            "sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), p))\n")
    done = subprocess.run([sys.executable, "-c", code, str(source), str(partial), str(QUANTIZED_TYPES[out_type]),
                           str(threads or thread_budget())], check=False, capture_output=True, text=True)
    if done.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise GGUFExportError(f"llama.cpp could not quantize {source} to {out_type} (status {done.returncode}):\n{tail}")
    partial.replace(out_path)
    return out_path


def export_gguf(model_dir: str | Path, out_path: str | Path, out_type: str = "f16") -> Path:
    """Write ``model_dir`` (a 16/32-bit Hugging Face folder) as one GGUF file of ``out_type``; returns its path."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    if out_type not in OUT_TYPES:
        raise GGUFExportError(f"out_type {out_type!r}: write one of {', '.join(OUT_TYPES)}.")
    from loralab.export.llama_cpp_setup import llama_cpp_tools

    tools = llama_cpp_tools()
    check_convertible(model_dir, tools)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    direct = out_type if out_type in CONVERTER_TYPES else "f16"
    converted = _aside(out_path) if direct == out_type else out_path.with_name(f".{out_path.name}.f16.partial")
    try:
        _run_converter(tools.convert_hf, [str(model_dir), "--outfile", str(converted), "--outtype", direct],
                       str(model_dir))
        if direct == out_type:
            converted.replace(out_path)
        else:
            quantize_gguf(converted, out_path, out_type)
    finally:
        converted.unlink(missing_ok=True)
    return out_path


def export_gguf_lora(adapter_dir: str | Path, out_path: str | Path, base_dir: str | Path,
                     out_type: str = "f16") -> Path:
    """Write a PEFT LoRA adapter as a GGUF LoRA (llama.cpp ``--lora``) with ``convert_lora_to_gguf.py``."""
    adapter_dir, out_path, base_dir = Path(adapter_dir), Path(out_path), Path(base_dir)
    if out_type not in ("f32", "f16", "bf16", "q8_0"):
        raise GGUFExportError(f"out_type {out_type!r}: a GGUF LoRA is written as f32, f16, bf16 or q8_0.")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise GGUFExportError(f"{adapter_dir} has no adapter_config.json: not a PEFT adapter folder.")
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("peft_type", "LORA") != "LORA" or config.get("use_dora"):
        raise GGUFExportError(f"{adapter_dir} is a {'DoRA' if config.get('use_dora') else config.get('peft_type')} "
                              "adapter; llama.cpp's GGUF LoRA format holds plain LoRA adapters only (merge it instead).")
    from loralab.export.llama_cpp_setup import llama_cpp_tools

    tools = llama_cpp_tools()
    check_convertible(base_dir, tools)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = _aside(out_path)
    try:
        _run_converter(tools.convert_lora, [str(adapter_dir), "--base", str(base_dir), "--outfile", str(partial),
                                            "--outtype", out_type], str(adapter_dir))
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    return out_path

