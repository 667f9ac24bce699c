"""The call a notebook's validation cell makes: every name its parameters cell defined, checked at once.

    _names_before_parameters = set(globals())      # the cell before the parameters cell
    ...                                            # the parameters cell (papermill injects after it)
    from loralab.params.notebook import params_from_namespace
    cfg = params_from_namespace(globals(), _names_before_parameters)

Unknown names (papermill itself only warns), wrong types and ranges are refused; for notebook 01's
``RunConfig`` this machine is checked too (optimizer, bitsandbytes: ``loralab.params.runtime_check``),
all before any model loads.
"""

from __future__ import annotations

from typing import Any

from loralab.params.run_config import RunConfig
from loralab.params.runtime_check import check_runtime
from loralab.params.schema import Schema, validate_against


def params_from_namespace(namespace: dict[str, Any], names_before: set[str],
                          schema: type[Schema] = RunConfig) -> Schema:
    """Validate every name a notebook's parameters cell (or papermill's injected cell) defined.

    ``names_before`` is ``set(globals())`` taken just before the parameters cell, so a misspelt
    name injected by papermill (which papermill itself only warns about) is refused here.
    """
    params = {k: v for k, v in namespace.items() if k not in names_before and not k.startswith("_")}
    cfg = validate_against(schema, params, source="notebook parameters")
    if isinstance(cfg, RunConfig):
        check_runtime(cfg)
    return cfg
