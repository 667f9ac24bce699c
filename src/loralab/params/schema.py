"""One validator for every notebook's parameters: unknown names, YAML traps and ranges, one sentence each.

    from loralab.params.schema import validate_against, ParamsError
    cfg = validate_against(MySchema, {"lora_rank": 8})   # ParamsError: unknown parameter 'lora_rank'. Did you mean ...
    cfg = validate_against(RunConfig, {"train_steps": 8})  # ParamsError: 'train_steps' is now 'max_steps'.

Each notebook has a pydantic schema (``RunConfig`` for notebook 01, ``AdaptersDemoConfig`` for 03);
this module turns a mapping into one of them or raises :class:`ParamsError`, whose message names the
field and says what to write. A parameter named like a secret (``hf_token``, ``api_key``...) is
refused: tokens come from the environment or Colab/Kaggle secrets, never parameters. A name an older
loralab used for a parameter (``RENAMED``) is refused with the one name every notebook uses now.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from loralab.params.errors import ParamsError, visible
from loralab.params.yaml_reader import is_yaml11_bool_word

# Parameter names that hold secrets: papermill writes every parameter into the executed notebook.
SECRET_NAME = re.compile(r"(?:^|_)(?:token|api_?key|secret|password|passwd|credentials?)$", re.IGNORECASE)
Schema = TypeVar("Schema", bound=BaseModel)
# Old parameter names -> the one name every notebook now uses for that idea (notebook 01's): refused, naming
# the new one, wherever a schema has it (``'train_steps' is now 'max_steps'``).
RENAMED = {
    "output_dir": "run_dir",
    "base_model": "model_name",
    "train_steps": "max_steps",
    "batch_size": "per_device_train_batch_size",
    "batch": "per_device_train_batch_size",
    "rank": "lora_r",
    "alpha": "lora_alpha",
    "seq": "max_seq_length",
    "targets": "target_modules",
}


def _nearest(key: str, names: list[str]) -> str:
    match = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else f" Valid names: {', '.join(names)}."


def unknown_name(key: str, names: list[str]) -> str:
    """The sentence for a parameter name that is not one of ``names``: a secret, an old name (:data:`RENAMED`), a
    look-alike, or a typo."""
    if SECRET_NAME.search(key):
        return (f"{key!r} looks like a secret: never pass a token as a parameter (papermill writes every "
                "parameter into the executed notebook). Set HF_TOKEN in the environment, or in Colab's Secrets / "
                "Kaggle's Add-ons > Secrets; loralab reads it from there.")
    if RENAMED.get(key) in names:
        return f"{key!r} is now {RENAMED[key]!r}."
    return f"unknown parameter {key!r}{visible(key)}.{_nearest(key, names)}"


def validate_against(schema: type[Schema], params: dict[str, Any], source: str = "params") -> Schema:
    """Validate ``params`` against a notebook's pydantic schema, or raise ParamsError (one sentence each)."""
    if not isinstance(params, dict):
        raise ParamsError(f"{source}: expected a mapping of name: value, got {type(params).__name__}.")
    names = list(schema.model_fields)
    problems = []
    for key, value in params.items():
        if not isinstance(key, str):
            problems.append(f"{key!r}: parameter names must be text.")
        elif key not in schema.model_fields:
            problems.append(unknown_name(key, names))
        else:
            problems.extend(_yaml_trap(key, value, schema.model_fields[key].annotation))
    if problems:
        raise ParamsError(f"{source}: " + " ".join(problems))
    try:
        return schema(**params)
    except ValidationError as error:
        lines = []
        for e in error.errors():
            message = e["msg"].removeprefix("Value error, ")
            if e["loc"]:
                field = ".".join(str(p) for p in e["loc"])
                help_line = schema.model_fields[e["loc"][0]].description
                got = e.get("input")
                note = visible(got) if isinstance(got, str) else ""
                lines.append(f"{field}: {message} (got {got!r}{note}); {field} = {help_line}.")
            else:
                lines.append(f"{message}.")
        raise ParamsError(f"{source}: " + " ".join(lines)) from None


def _yaml_trap(key: str, value: Any, annotation: Any) -> list[str]:
    """A boolean field given anything but true/false, or a text field given a boolean, explained."""
    if annotation is bool and not isinstance(value, bool):
        why = (f" (YAML 1.1 reads {value!r} as a boolean; loralab does not guess)" if is_yaml11_bool_word(value)
               else "")
        return [f"{key}: write true or false, not {value!r}{why}."]
    if isinstance(value, bool) and annotation in (int, float):
        return [f"{key}: expected a number, not the boolean {value}."]
    if isinstance(value, bool) and "str" in str(annotation) and "bool" not in str(annotation):
        return [(f"{key}: expected text but got the boolean {value}: YAML 1.1 readers (e.g. plain papermill -f) "
                 f"turn yes/no/on/off into booleans; quote the value, e.g. {key}: \"no\".")]
    return []
