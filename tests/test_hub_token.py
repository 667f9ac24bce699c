"""Hub token from the environment or Colab/Kaggle secrets; model loading is safetensors-only, no remote code."""

from __future__ import annotations

import sys
import types
from typing import ClassVar

import pytest

from loralab.data import chat_rows as chat_data
from loralab.model import hub_token
from loralab.model import loading as modeling
from loralab.params.run_config import validate_params

FAKE = "hf_FAKEtokenFORtests0123456789abcdef"


@pytest.fixture
def no_token(monkeypatch):
    for name in hub_token.ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails: not on Colab
    monkeypatch.setitem(sys.modules, "kaggle_secrets", None)


def test_no_token_anywhere(no_token):
    assert hub_token.hub_token() is None
    assert hub_token.token_kwargs() == {}
    assert "none" in hub_token.describe_token_source()


def test_environment_variables_in_order(no_token, monkeypatch):
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_second")
    assert hub_token.hub_token() == "hf_second"
    monkeypatch.setenv("HF_TOKEN", f"  {FAKE}\n")
    assert hub_token.token_kwargs() == {"token": FAKE}
    source = hub_token.describe_token_source()
    assert source == "environment variable HF_TOKEN" and FAKE not in source


def test_colab_secret(no_token, monkeypatch):
    class SecretNotFoundError(Exception):
        pass

    secrets = {"HF_TOKEN": FAKE}

    def get(name):
        if name not in secrets:
            raise SecretNotFoundError(name)
        return secrets[name]

    colab = types.ModuleType("google.colab")
    colab.userdata = types.SimpleNamespace(get=get)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert hub_token.hub_token() == FAKE and hub_token.describe_token_source() == "Colab secret HF_TOKEN"
    secrets.clear()  # secret missing or notebook access not granted: no token, no crash
    assert hub_token.hub_token() is None


def test_kaggle_secret(no_token, monkeypatch):
    kaggle = types.ModuleType("kaggle_secrets")

    class UserSecretsClient:
        def get_secret(self, name):
            return FAKE if name == "HF_TOKEN" else None

    kaggle.UserSecretsClient = UserSecretsClient
    monkeypatch.setitem(sys.modules, "kaggle_secrets", kaggle)
    assert hub_token.hub_token() == FAKE and hub_token.describe_token_source() == "Kaggle secret HF_TOKEN"


class _FakeFast:
    calls: ClassVar[list[dict]] = []

    @classmethod
    def from_pretrained(cls, **kwargs):
        cls.calls.append(kwargs)
        return "model", "tokenizer"


def test_load_model_passes_token_only_when_set_and_never_unpickles(no_token, monkeypatch):
    monkeypatch.setattr(modeling, "_fast_language_model", lambda: _FakeFast)
    _FakeFast.calls.clear()
    modeling.load_model(validate_params({}))
    monkeypatch.setenv("HF_TOKEN", FAKE)
    modeling.load_model(validate_params({"model_name": "org/model", "trust_remote_code": True}))
    without, with_token = _FakeFast.calls
    assert "token" not in without and with_token["token"] == FAKE
    assert without["use_safetensors"] is True and with_token["use_safetensors"] is True
    assert without["trust_remote_code"] is False and with_token["trust_remote_code"] is True


def test_hub_datasets_get_the_token_only_when_set(no_token, monkeypatch):
    calls = []

    def fake_load_dataset(name, split, **kwargs):
        calls.append(kwargs)
        return [{"instruction": "hi", "output": "hello"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    chat_data.load_chat_rows("org/data", "train")
    monkeypatch.setenv("HF_TOKEN", FAKE)
    chat_data.load_chat_rows("org/data", "train")
    assert calls == [{}, {"token": FAKE}]
