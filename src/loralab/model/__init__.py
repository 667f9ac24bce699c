"""Model: the embedded model, loading through Unsloth, LoRA attachment, generation, hub token, versions, and the
stack's known messages that do not apply (``quiet_known_warnings``, a notebook's first call)."""

from loralab.model.embedded import resolve_model_path
from loralab.model.generation import generate_replies
from loralab.model.hub_token import describe_token_source
from loralab.model.known_messages import quiet_known_warnings
from loralab.model.loading import (
    attach_lora,
    base_weights_fingerprint,
    count_parameters,
    keep_initial_adapter,
    load_model,
    lora_layer_table,
    weights_fingerprint,
    weights_fingerprints,
)
from loralab.model.versions import library_versions

__all__ = ["attach_lora", "base_weights_fingerprint", "count_parameters", "describe_token_source",
           "generate_replies", "keep_initial_adapter", "library_versions", "load_model", "lora_layer_table",
           "quiet_known_warnings", "resolve_model_path", "weights_fingerprint", "weights_fingerprints"]
