"""``python -m loralab.model``: build every embedded model into the local cache once (``make setup`` runs it)."""

from loralab.model.embedded import resolve_model_path
from loralab.params.names import EMBEDDED_MODELS, EMBEDDED_PREFIX, TINY_RANDOM_MODELS

for name in [*EMBEDDED_MODELS, *TINY_RANDOM_MODELS]:
    print(resolve_model_path(EMBEDDED_PREFIX + name))
