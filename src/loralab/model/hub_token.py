"""The Hugging Face hub token: from the environment or Colab / Kaggle secrets, never from a parameter.

papermill writes every parameter into the executed notebook (cell and metadata), so a token passed
as a parameter would leak into every run folder. loralab reads it where secrets belong::

    from loralab.model.hub_token import hub_token, token_kwargs
    token = hub_token()                       # str, or None when no token is set anywhere
    AutoModel.from_pretrained(name, **token_kwargs())   # {"token": ...} only when one is set

Looked up in order: ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, Colab's Secrets panel
(``google.colab.userdata.get("HF_TOKEN")``, notebook access granted), Kaggle's Add-ons > Secrets
(``kaggle_secrets.UserSecretsClient().get_secret("HF_TOKEN")``). The value is never printed or
logged; ``describe_token_source()`` says where it came from without showing it.
"""

from __future__ import annotations

import os

ENV_NAMES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
SECRET_NAME = "HF_TOKEN"


def _colab_secret() -> str | None:
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return userdata.get(SECRET_NAME) or None
    except Exception:  # noqa: BLE001  SecretNotFoundError, NotebookAccessError, TimeoutException: none
        return None


def _kaggle_secret() -> str | None:
    try:
        from kaggle_secrets import UserSecretsClient  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        return UserSecretsClient().get_secret(SECRET_NAME) or None
    except Exception:  # noqa: BLE001  no such secret attached to this notebook, or no backend
        return None


def _lookup() -> tuple[str | None, str]:
    for name in ENV_NAMES:
        value = os.environ.get(name, "").strip()
        if value:
            return value, f"environment variable {name}"
    value = _colab_secret()
    if value:
        return value.strip(), "Colab secret HF_TOKEN"
    value = _kaggle_secret()
    if value:
        return value.strip(), "Kaggle secret HF_TOKEN"
    return None, "none (public models and datasets only)"


def hub_token() -> str | None:
    """The hub token from the environment or Colab/Kaggle secrets, or None."""
    return _lookup()[0]


def describe_token_source() -> str:
    """Where the token comes from (never the token itself), e.g. 'environment variable HF_TOKEN'."""
    return _lookup()[1]


def token_kwargs() -> dict[str, str]:
    """``{"token": <token>}`` for ``from_pretrained`` / ``load_dataset`` when one is set, else ``{}``."""
    token = hub_token()
    return {"token": token} if token else {}
