"""GGUF export of a merged Llama-architecture folder with the PyPI ``gguf`` package (no llama.cpp build).

    from loralab.adapters.gguf import export_gguf
    path = export_gguf("runs/a/merged-json", "runs/a/merged-json.f16.gguf", out_type="f16")

Unsloth's ``save_pretrained_gguf`` raises NotImplementedError on its CPU backend and needs a llama.cpp
build on a GPU; llama.cpp's ``convert_hf_to_gguf.py`` is not part of the ``gguf`` wheel. This module
does the part of that converter a Llama-family model with a GPT-2-style BPE tokenizer needs (SmolLM2,
Llama 2/3 without rope scaling, TinyLlama...): llama.cpp tensor names (``gguf.TensorNameMap``), the
rotary q/k row permutation llama.cpp expects, hyper-parameters, vocabulary, merges, special tokens and
chat template, written as F32, F16 or Q8_0 (``gguf.quants``). Anything else is refused with a
ValueError that says to use llama.cpp. K-quants (Q4_K_M...) need ``llama-quantize`` from llama.cpp.

The result is checked by reading it back with transformers (``from_pretrained(..., gguf_file=...)``,
which undoes the permutation) and comparing logits with the folder; llama.cpp itself is not run here.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT_TYPES = ("f32", "f16", "q8_0")


def _permute(weights, n_head: int):
    """llama.cpp's row order for rotary q/k weights (convert_hf_to_gguf.LlamaModel.permute)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _bpe_tokens(model_dir: Path, gguf) -> tuple[list[bytes], list]:
    """Token texts in id order and their types, from a byte-level BPE ``tokenizer.json``."""
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    model, pre = tokenizer.get("model", {}), json.dumps(tokenizer.get("pre_tokenizer"))
    if model.get("type") != "BPE" or "ByteLevel" not in pre:
        raise ValueError(f"{model_dir}: this exporter writes GPT-2-style byte-level BPE vocabularies only; use "
                         "llama.cpp's convert_hf_to_gguf.py for SentencePiece and other tokenizers.")
    by_id = {i: text for text, i in model["vocab"].items()}
    special = {}
    for added in tokenizer.get("added_tokens", []):
        by_id.setdefault(added["id"], added["content"])
        if added.get("special"):
            special[added["id"]] = added["content"]
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError(f"{model_dir}: token ids are not contiguous; use llama.cpp's converter.")
    tokens = [by_id[i].encode("utf-8") for i in range(len(by_id))]
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(by_id))]
    return tokens, types


def export_gguf(model_dir: str | Path, out_path: str | Path, out_type: str = "f16", pre_tokenizer: str = "smollm") -> Path:
    """Write ``model_dir`` (a 16/32-bit Llama-architecture HF folder) as one GGUF file; returns its path.

    ``pre_tokenizer`` is llama.cpp's name for the model's pre-tokenization regex (``tokenizer.ggml.pre``:
    "smollm" for SmolLM2, "llama-bpe" for Llama 3, "default" otherwise); llama.cpp's converter picks it by
    hashing tokenizer output, which this module cannot do.
    """
    import gguf
    import numpy as np
    from safetensors import safe_open

    model_dir, out_path = Path(model_dir), Path(out_path)
    if out_type not in OUT_TYPES:
        raise ValueError(f"out_type {out_type!r}: write one of {OUT_TYPES}; other quantizations need llama.cpp's "
                         "llama-quantize on the f16 file.")
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ValueError(f"{model_dir} is a {config.get('model_type')!r} model; this exporter handles Llama-architecture "
                         "models only. Use llama.cpp's convert_hf_to_gguf.py for other architectures.")
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"{model_dir} uses rope scaling {rope.get('rope_type')!r}, which needs llama.cpp's converter.")
    theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise ValueError(f"{model_dir} has bias terms; use llama.cpp's convert_hf_to_gguf.py.")

    n_head, n_kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    n_layers, hidden = config["num_hidden_layers"], config["hidden_size"]
    file_type = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                 "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[out_type]

    tokens, types = _bpe_tokens(model_dir, gguf)
    while len(tokens) < config["vocab_size"]:
        tokens.append(f"[PAD{len(tokens)}]".encode())
        types.append(gguf.TokenType.UNUSED)

    writer = gguf.GGUFWriter(str(out_path), "llama")
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_rope_dimension_count(config.get("head_dim", hidden // n_head))
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    files = sorted(model_dir.glob("*.safetensors"))
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118  (safe_open has no __iter__)
                if name == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue
                new_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
                if new_name is None:
                    raise ValueError(f"{file.name}: no llama.cpp name for tensor {name}; use llama.cpp's converter.")
                data = handle.get_tensor(name).float().numpy()
                if name.endswith("q_proj.weight"):
                    data = _permute(data, n_head)
                elif name.endswith("k_proj.weight"):
                    data = _permute(data, n_kv)
                if data.ndim == 1 or out_type == "f32":
                    writer.add_tensor(new_name, data.astype(np.float32))
                elif out_type == "f16":
                    writer.add_tensor(new_name, data.astype(np.float16))
                else:
                    quant = gguf.GGMLQuantizationType.Q8_0
                    writer.add_tensor(new_name, gguf.quants.quantize(data, quant), raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_path


def check_gguf(gguf_path: str | Path, model_dir: str | Path) -> dict[str, float | bool]:
    """Read the GGUF back with transformers and compare tokens and probe logits with ``model_dir`` (fp32).

    Returns ``max_abs_diff`` (logits of the GGUF as transformers dequantizes it), ``argmax_agreement``,
    ``same_vocab`` (the stored token list equals tokenizer.json's, by id) and ``same_chat_template``.
    This checks the file's content, not llama.cpp's kernels. (Rebuilding a transformers tokenizer from
    the GGUF takes ~40 s on these CPUs, so the vocabulary is compared directly.)
    """
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from loralab.adapters.save import probe_logits

    hf_logging.disable_progress_bar()
    gguf_path, model_dir = Path(gguf_path), Path(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    reference = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, use_safetensors=True).eval()
    ids, expected = probe_logits(reference, tokenizer)
    del reference
    expected_tokens, _ = _bpe_tokens(model_dir, gguf)
    reader = gguf.GGUFReader(str(gguf_path))
    field = reader.fields["tokenizer.ggml.tokens"]
    stored_tokens = [bytes(field.parts[i]) for i in field.data]
    stored_template = reader.fields["tokenizer.chat_template"].contents() if "tokenizer.chat_template" in reader.fields \
        else None
    del reader
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = lambda iterable, **_: iterable  # transformers' GGUF loader draws an unconditional bar
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32).eval()
    finally:
        gguf_utils.tqdm = bar
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    return {
        "max_abs_diff": (logits - expected).abs().max().item(),
        "argmax_agreement": (logits.argmax(-1) == expected.argmax(-1)).float().mean().item(),
        "same_vocab": stored_tokens[: len(expected_tokens)] == expected_tokens,
        "same_chat_template": stored_template == tokenizer.chat_template,
        "file_bytes": gguf_path.stat().st_size,
    }

