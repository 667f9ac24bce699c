"""The call a notebook's validation cell makes: every parameter, checked at once, before any model loads.

    _names_before_parameters = set(globals())      # the cell before the parameters cell
    ...                                            # the parameters cell (papermill injects after it)
    from loralab.params.notebook import params_from_namespace
    cfg = params_from_namespace(globals(), _names_before_parameters)

The parameters are the schema's fields found in the namespace (so a second "Run all" in the same kernel reads
the values just edited) and any other name new since the cell before the parameters cell (so a misspelt name,
which papermill itself only warns about, is refused). Wrong types and ranges are refused too; for notebook 01's
``RunConfig`` this machine is checked (optimizer, bitsandbytes: ``loralab.params.runtime_check``).
``loralab.runs.notebook_params`` adds the ``params_file`` knob on top.
"""

from __future__ import annotations

from typing import Any

from loralab.params.run_config import RunConfig
from loralab.params.runtime_check import RuntimeCheckError, check_runtime
from loralab.params.schema import Schema, validate_against

PARAMS_FILE = "params_file"  # the knob that names a params file from inside a notebook (loralab.runs.notebook_params)


def namespace_params(namespace: dict[str, Any], names_before: set[str], schema: type[Schema]) -> dict[str, Any]:
    """The parameters a notebook's namespace holds: every schema field, and every public name new since
    ``names_before`` was taken (a misspelt one among them is then refused by the schema)."""
    return {k: v for k, v in namespace.items()
            if k != PARAMS_FILE and (k in schema.model_fields or (k not in names_before and not k.startswith("_")))}


def validated(schema: type[Schema], params: dict[str, Any], source: str = "notebook parameters",
              packages: bool = True) -> Schema:
    """``params`` checked against ``schema``, and for a training config this machine too (``check_runtime``;
    ``packages=False`` skips the slow import that checks the optimizer's packages). ``loralab run`` calls this
    before the kernel starts, the validation cell after it: one check, two places."""
    cfg = validate_against(schema, params, source=source)
    if isinstance(cfg, RunConfig):
        try:
            check_runtime(cfg, packages=packages)
        except RuntimeCheckError as error:
            raise RuntimeCheckError(f"{source}: {error}") from None
    return cfg


def params_from_namespace(namespace: dict[str, Any], names_before: set[str],
                          schema: type[Schema] = RunConfig, file_params: dict[str, Any] | None = None) -> Schema:
    """Validate the parameters a notebook's namespace holds (see the module docstring); ``file_params`` (a params
    file's mapping) replace the namespace's values of the same names."""
    return validated(schema, namespace_params(namespace, names_before, schema) | (file_params or {}))
