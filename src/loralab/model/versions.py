"""The versions of the libraries a run depends on, recorded in metrics.json and every adapter manifest.

    from loralab.model.versions import library_versions
    library_versions()     # {'python': '3.11.2', 'loralab': '0.1.0', 'unsloth': '2026.10.9', 'torch': ...}
"""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("loralab", "unsloth", "unsloth_zoo", "torch", "transformers", "trl", "peft", "datasets",
            "bitsandbytes", "accelerate", "lm_eval")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a run depends on (None where missing)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
