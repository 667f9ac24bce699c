"""A model folder's tokenizer and chat template without torch: what ``loralab run --check`` tokenizes with.

    from loralab.data.template_tokenizer import folder_tokenizer
    tokenizer = folder_tokenizer("~/.cache/loralab/models/smollm2-135m-instruct")   # no torch, ~2 s
    tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]

``transformers.AutoTokenizer`` imports torch (about 8 s on these machines); the checks before the kernel
need only what ``apply_chat_template`` does for a fast tokenizer: render the chat template with
transformers' own Jinja renderer (``render_jinja_template``, given the special tokens as the tokenizer gives
them) and encode the text with the folder's ``tokenizer.json`` (Hugging Face ``tokenizers``) without adding
special tokens. ``tests/test_supervision.py`` checks that the ids equal ``AutoTokenizer``'s on real rows.
A folder without ``tokenizer.json`` or with several named chat templates gets None here: the caller then
loads ``AutoTokenizer`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _content(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


class TemplateTokenizer:
    """The parts of a Hugging Face fast tokenizer that the supervision checks call (see the module docstring)."""

    def __init__(self, folder: Path, chat_template: str, config: dict[str, Any]):
        from tokenizers import Tokenizer

        self.folder = folder
        self.chat_template = chat_template
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.special_tokens_map = {name: token for name in SPECIAL_NAMES if (token := _content(config.get(name)))}
        self.eos_token = self.special_tokens_map.get("eos_token")

    def apply_chat_template(self, messages: list[dict], tokenize: bool = True, return_dict: bool = False,
                            add_generation_prompt: bool = False) -> Any:
        from transformers.utils.chat_template_utils import render_jinja_template

        rendered, _ = render_jinja_template(conversations=[messages], chat_template=self.chat_template,
                                            add_generation_prompt=add_generation_prompt, **self.special_tokens_map)
        if not tokenize:
            return rendered[0]
        ids = self._tokenizer.encode(rendered[0], add_special_tokens=False).ids
        return {"input_ids": ids} if return_dict else ids

    def get_added_vocab(self) -> dict[str, int]:
        return {token.content: index for index, token in self._tokenizer.get_added_tokens_decoder().items()}

    @property
    def all_special_tokens(self) -> list[str]:
        return sorted(set(self.special_tokens_map.values()))

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)


def folder_tokenizer(folder: str | Path) -> TemplateTokenizer | None:
    """The torch-free tokenizer of a model folder, or None when it needs transformers' own loader (see above)."""
    folder = Path(folder).expanduser()
    config_file, tokenizer_file = folder / "tokenizer_config.json", folder / "tokenizer.json"
    if not config_file.is_file() or not tokenizer_file.is_file():
        return None
    config = json.loads(config_file.read_text(encoding="utf-8"))
    jinja = folder / "chat_template.jinja"
    template = jinja.read_text(encoding="utf-8") if jinja.is_file() else config.get("chat_template")
    if not isinstance(template, str) or not template:
        return None
    return TemplateTokenizer(folder, template, config)
