"""Look-alike bases for demonstrations and tests: a changed chat template, or one weight changed by one ulp.

    from loralab.adapters.perturbed_base import base_with_changed_template, base_with_one_weight_changed
    with base_with_one_weight_changed("embedded/smollm2-135m-instruct") as other:
        check_adapter_base(adapter_dir, str(other))      # ValueError: weights ... differ

Both build a temporary model folder (removed on exit). Unchanged files are symlinked, so only the
file that changes is copied. The weight change edits one value in place inside the safetensors
data (its lowest mantissa bit), so the file stays valid and loads like the original.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from loralab.model.fingerprints import chat_template_text, local_model_folder


def _folder(base_model: str) -> Path:
    folder = local_model_folder(base_model)
    if folder is None:
        raise ValueError(f"the base {base_model} is not available locally.")
    return folder


def _linked_copy(source: Path, target: Path, copy: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            if path.name in copy:
                shutil.copyfile(path, target / path.name)
            else:
                (target / path.name).symlink_to(path.resolve())


def change_one_weight(path: str | Path, tensor: str | None = None) -> str:
    """Flip the lowest bit of the first value of ``tensor`` (default: the last one stored) in place."""
    path = Path(path)
    with open(path, "r+b") as handle:
        header_len = struct.unpack("<Q", handle.read(8))[0]
        header = json.loads(handle.read(header_len))
        header.pop("__metadata__", None)
        name = tensor or max(header, key=lambda k: header[k]["data_offsets"][0])
        position = 8 + header_len + header[name]["data_offsets"][0]  # little endian: lowest byte first
        handle.seek(position)
        byte = handle.read(1)[0]
        handle.seek(position)
        handle.write(bytes([byte ^ 0x01]))
    return name


@contextlib.contextmanager
def base_with_one_weight_changed(base_model: str, tensor: str | None = None) -> Iterator[Path]:
    """A temporary copy of the base whose weights differ in one value by one unit in the last place."""
    source = _folder(base_model)
    with tempfile.TemporaryDirectory(prefix="loralab-perturbed-") as tmp:
        target = Path(tmp) / "base"
        weight_files = tuple(p.name for p in source.glob("*.safetensors"))
        _linked_copy(source, target, copy=weight_files[:1])
        change_one_weight(target / weight_files[0], tensor)
        yield target


@contextlib.contextmanager
def base_with_changed_template(base_model: str, new_template: str | None = None) -> Iterator[Path]:
    """A temporary copy of the base (weights symlinked) whose chat template differs."""
    source = _folder(base_model)
    template = chat_template_text(source) or ""
    new_template = new_template if new_template is not None else template.replace(
        "You are a helpful AI assistant", "You are a pirate") + "\n"
    with tempfile.TemporaryDirectory(prefix="loralab-template-") as tmp:
        target = Path(tmp) / "base"
        _linked_copy(source, target, copy=("chat_template.jinja", "tokenizer_config.json"))
        if (target / "chat_template.jinja").is_file():
            (target / "chat_template.jinja").write_text(new_template, encoding="utf-8")
        else:
            config = json.loads((target / "tokenizer_config.json").read_text())
            config["chat_template"] = new_template
            (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
        yield target
