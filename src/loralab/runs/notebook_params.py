"""A notebook's validation cell: every parameter checked before any model loads, a params file on request.

    cfg = notebook_params(globals(), _names_before_parameters)                      # notebook 01
    cfg = notebook_params(globals(), _names_before_parameters, schema=GrpoConfig)   # notebook 05

``params_file`` in the parameters cell names a params file, your own or a shipped one by its name
(``"colab_t4.yaml"`` is ``params/01_qlora_finetune/colab_t4.yaml``): its values replace the cell's. That is
how a Colab or Kaggle user picks a shipped params file without papermill. The rest is
``loralab.params.notebook.params_from_namespace``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loralab.params.contracts import CONTRACTS
from loralab.params.errors import ParamsError
from loralab.params.notebook import PARAMS_FILE, params_from_namespace
from loralab.params.run_config import RunConfig
from loralab.params.schema import Schema
from loralab.params.yaml_reader import read_params_file
from loralab.runs.shipped import find_params_file, params_dir


def params_file_path(name: str, schema: type[Schema]) -> Path:
    """``name`` as a path from the current folder, else the shipped params file of that name for the notebook of
    ``schema`` (``loralab.runs.shipped.find_params_file``); ParamsError naming the shipped ones when neither exists."""
    stem = next((c.name for c in CONTRACTS.values() if c.schema is schema), "")
    found = Path(find_params_file(name, Path(f"{stem}.ipynb")))
    if found.is_file():
        return found
    shipped = sorted(p.name for p in params_dir(stem).glob("*.yaml")) if stem else []
    raise ParamsError(f"params_file: {name} is neither a file here ({Path.cwd()}) nor a shipped params file of this "
                      f"notebook ({', '.join(shipped) or 'none'}). Upload it next to the notebook, or give its path.")


def notebook_params(namespace: dict[str, Any], names_before: set[str], schema: type[Schema] = RunConfig) -> Schema:
    """The validated parameters of the notebook whose ``globals()`` is ``namespace``, with ``params_file``'s values."""
    name = namespace.get(PARAMS_FILE) or ""
    if not isinstance(name, str):
        raise ParamsError(f"params_file: write a file name in quotes, not {name!r}.")
    file_params = {}
    if name:
        path = params_file_path(name, schema)
        file_params = read_params_file(path)
        print(f"params_file {path}: {', '.join(file_params)} (these replace the parameters cell's values)")
    return params_from_namespace(namespace, names_before, schema, file_params)
