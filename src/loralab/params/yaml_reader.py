"""YAML for parameters, without YAML 1.1's surprises: only true/false are booleans, 2e-4 is a number.

PyYAML follows YAML 1.1, where ``yes``, ``no``, ``on``, ``off``, ``y`` and ``n`` are booleans (so
``dataset_split: no`` or a country code ``NO`` silently becomes ``False``: the "Norway problem") and
``2e-4`` is a string (a YAML 1.1 float needs a dot). Params files and ``-p NAME VALUE`` values are
read with this loader instead::

    from loralab.params.yaml_reader import load_params_yaml, read_params_file
    load_params_yaml("optim: adamw_8bit\\nload_in_4bit: yes\\nlearning_rate: 2e-4")
    # {'optim': 'adamw_8bit', 'load_in_4bit': 'yes', 'learning_rate': 0.0002}
    read_params_file("params/01_qlora_finetune/default.yaml")   # the mapping papermill receives

Dates such as ``2024-01-01`` stay text too. ``yes`` stays the text ``'yes'``: a text field keeps it, and the validator (``loralab.params.schema``)
tells a boolean field to write ``true`` or ``false``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from loralab.params.errors import ParamsError

BOOL_TAG = "tag:yaml.org,2002:bool"
FLOAT_TAG = "tag:yaml.org,2002:float"
TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"  # 2024-01-01 stays text (no parameter is a date)
# Words YAML 1.1 reads as booleans but this loader leaves as text (the validator names them).
YAML11_BOOL_WORDS = frozenset({"yes", "no", "on", "off", "y", "n"})

_TRUE_FALSE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class ParamsLoader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false and whose floats include 2e-4."""


ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (BOOL_TAG, TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ParamsLoader.add_implicit_resolver(BOOL_TAG, _TRUE_FALSE, list("tTfF"))
# After SafeLoader's own int resolver, so 8 stays an int; only exponent forms without a dot are new.
ParamsLoader.add_implicit_resolver(FLOAT_TAG, re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_params_yaml(text: str) -> Any:
    """Parse YAML text with :class:`ParamsLoader`; ``yaml.YAMLError`` for anything it cannot read."""
    try:
        return yaml.load(text, Loader=ParamsLoader)  # a SafeLoader subclass: no arbitrary objects
    except (ValueError, OverflowError, RecursionError) as error:  # e.g. !!timestamp 0000-00-00, deep nesting
        raise yaml.YAMLError(f"{type(error).__name__}: {error}") from None


def is_yaml11_bool_word(value: Any) -> bool:
    """True for text such as 'yes' or 'Off' that YAML 1.1 (and so plain papermill) reads as a boolean."""
    return isinstance(value, str) and value.strip().lower() in YAML11_BOOL_WORDS


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML params file, unvalidated (papermill receives exactly this)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist.")
    try:
        data = load_params_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not UTF-8 text; save the params file as UTF-8 YAML.") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of name: value, got {type(data).__name__}.")
    return data
