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


class DuplicateKeyError(yaml.YAMLError):
    """A mapping sets the same name twice (PyYAML would silently keep the last one)."""


class ParamsLoader(yaml.SafeLoader):
    """SafeLoader whose only booleans are true/false, whose floats include 2e-4, and that refuses duplicate keys."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                break
            if first != key_node.start_mark.line + 1:
                raise DuplicateKeyError(f"{key!r} is set twice (lines {first} and {key_node.start_mark.line + 1}): "
                                        "the second would silently win; keep one")
        return super().construct_mapping(node, deep=deep)


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


# Text that holds braces and colons ("Classify this review: {text}"), which YAML would read as a mapping:
# a -p value of these parameters is taken as written unless it is quoted YAML text.
TEXT_AS_WRITTEN = ("prompt_template", "system_prompt")


def param_value(name: str, text: str) -> Any:
    """A ``-p NAME VALUE`` value read as YAML (an empty value stays the empty text); the template parameters keep
    what was written when YAML would not read it as text (``-p prompt_template "Classify this review: {text}"``)."""
    if not text.strip():
        return text
    if name in TEXT_AS_WRITTEN:
        try:
            value = load_params_yaml(text)
        except yaml.YAMLError:
            return text
        return value if isinstance(value, str) else text
    return load_params_yaml(text)


def yaml_problem(error: yaml.YAMLError) -> str:
    """' (line 2, column 1): expected ...': PyYAML's several-line message as one clause."""
    where = getattr(error, "problem_mark", None)
    line = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return f"{line}: {problem}"


def is_yaml11_bool_word(value: Any) -> bool:
    """True for text such as 'yes' or 'Off' that YAML 1.1 (and so plain papermill) reads as a boolean."""
    return isinstance(value, str) and value.strip().lower() in YAML11_BOOL_WORDS


def read_params_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML params file, unvalidated (papermill receives exactly this)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist.")
    if path.suffix == ".ipynb":
        raise ParamsError(f"{path} is a notebook, not a params file: give the notebook first and params files "
                          "with -f (loralab run NOTEBOOK.ipynb -f PARAMS.yaml).")
    try:
        data = load_params_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ParamsError(f"{path} is not UTF-8 text; save the params file as UTF-8 YAML.") from None
    except DuplicateKeyError as error:
        raise ParamsError(f"{path}: {error}.") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML{yaml_problem(error)}. Each line is `name: value`; quote text "
                          "that holds ': ' or starts with a special character.") from None
    if data is None:
        raise ParamsError(f"{path} is empty (or only comments): it sets no parameter. Write `name: value` lines, "
                          "or leave the file out to run with the notebook's defaults.")
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of name: value, got {type(data).__name__}.")
    return data
