"""Params: each notebook's parameters validated (names, types, ranges, this machine) before any model loads.

Notebook demos keep their own parameter helpers in their modules (notebook 03: ``loralab.params.adapters_demo``);
they are not re-exported here."""

from loralab.params.errors import ParamsError
from loralab.params.notebook import params_from_namespace
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig, load_params, validate_params

__all__ = ["ParamsError", "PreferenceConfig", "RunConfig", "load_params", "params_from_namespace", "validate_params"]
