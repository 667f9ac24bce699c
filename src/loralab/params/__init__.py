"""Params: each notebook's parameters validated (names, types, ranges, this machine) before any model loads."""

from loralab.params.adapters_demo import demo_params_from_namespace
from loralab.params.errors import ParamsError
from loralab.params.notebook import params_from_namespace
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig, load_params, validate_params

__all__ = ["ParamsError", "PreferenceConfig", "RunConfig", "demo_params_from_namespace", "load_params", "params_from_namespace",
           "validate_params"]
