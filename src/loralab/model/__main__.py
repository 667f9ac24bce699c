"""``python -m loralab.model``: convert every embedded model into the local cache once (``make setup`` runs it)."""

from loralab.model.embedded import resolve_model_path
from loralab.params.names import EMBEDDED_MODELS, EMBEDDED_PREFIX

for name in EMBEDDED_MODELS:
    print(resolve_model_path(EMBEDDED_PREFIX + name))
