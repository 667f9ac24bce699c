"""Property tests: no input makes the params validator or the dataset normaliser crash.

Whatever hypothesis generates (any mapping of names to JSON-like values, any YAML text, any JSON-like
row, any JSON Lines text), the only exceptions that may come out are loralab's own ParamsError /
DatasetError, whose message names the field or row; everything else is a success with the invariants
the trainer relies on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loralab.data.chat_rows import ROLES, DatasetError, normalise_row, rows_from_jsonl_text
from loralab.params.errors import ParamsError
from loralab.params.run_config import FIELD_NAMES, RunConfig, validate_params
from loralab.params.yaml_reader import YAML11_BOOL_WORDS, read_params_file

# LORALAB_HYPOTHESIS_EXAMPLES=5000 for a long hunt; 150 keeps `make test` fast.
SETTINGS = settings(max_examples=int(os.environ.get("LORALAB_HYPOTHESIS_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=30) | st.sampled_from(sorted(YAML11_BOOL_WORDS) + ["2e-4", "1e-3", "true", "0"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
param_names = st.sampled_from(FIELD_NAMES) | st.text(max_size=20) | st.sampled_from(["hf_token", "lora_rank"])
# Values near the valid ones, so that some mappings pass and the checks after the type check run too.
plausible = st.sampled_from([0, 1, 16, -1, 0.5, 1.0, 2e-4, "2e-4", "all-linear", "attention", ["q_proj"], [],
                             "embedded/smollm2-135m-instruct", "org/model", "not a model", "truncate", "drop",
                             True, False, "yes", ""])


@SETTINGS
@given(st.dictionaries(param_names, json_values | plausible, max_size=6))
def test_validate_params_raises_only_params_error(params):
    try:
        cfg = validate_params(params)
    except ParamsError as error:
        assert str(error).startswith("params: ")
        return
    assert isinstance(cfg, RunConfig)
    assert cfg.lora_r >= 1 and cfg.lora_alpha > 0 and 0 <= cfg.lora_dropout < 1
    assert cfg.learning_rate > 0 and cfg.max_steps >= 1 and cfg.max_seq_length >= 16
    assert all(isinstance(getattr(cfg, name), bool) for name in FIELD_NAMES
               if RunConfig.model_fields[name].annotation is bool)


@SETTINGS
@given(json_values)
def test_validate_params_refuses_anything_that_is_not_a_mapping(value):
    if isinstance(value, dict):
        return
    try:
        validate_params(value)
    except ParamsError:
        return
    raise AssertionError(f"{value!r} was accepted")


yaml_text = st.text(max_size=80) | st.builds(
    lambda pairs: "\n".join(f"{k}: {v}" for k, v in pairs),
    st.lists(st.tuples(st.sampled_from(FIELD_NAMES), st.text(max_size=12) | st.sampled_from(
        ["yes", "no", "2e-4", "2001-13-45", "[1, 2", "{a: 1}", "!!python/object:os.system x", "&a [*a]",
         "0x1f", "1:30", "~", "'quoted'", ".inf", "- a"])), max_size=5))


@pytest.fixture(scope="module")
def params_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("params") / "params.yaml"


@SETTINGS
@given(yaml_text)
def test_params_files_raise_only_params_error(params_path, text):
    params_path.write_text(text, encoding="utf-8")  # one file, rewritten per example
    try:
        validate_params(read_params_file(params_path), source=str(params_path))
    except ParamsError as error:
        assert str(params_path) in str(error)


message = st.fixed_dictionaries({"role": st.sampled_from([*ROLES, "tool", "bot"]) | json_values,
                                 "content": st.text(max_size=10) | json_values})
rows = (json_values
        | st.fixed_dictionaries({"messages": st.lists(message, max_size=4) | json_values})
        | st.fixed_dictionaries({"conversations": st.lists(st.fixed_dictionaries(
            {"from": st.sampled_from(["human", "gpt", "system", "robot"]) | json_values,
             "value": st.text(max_size=10) | json_values}), max_size=4) | json_values})
        | st.fixed_dictionaries({"instruction": st.text(max_size=10) | json_values,
                                 "output": st.text(max_size=10) | json_values},
                                optional={"input": st.text(max_size=10) | json_values}))


@SETTINGS
@given(rows)
def test_normalise_row_raises_only_dataset_error(row):
    try:
        out = normalise_row(row, "data.jsonl row 3")
    except DatasetError as error:
        assert str(error).startswith("data.jsonl row 3")
        return
    messages = out["messages"]
    assert messages and all(m["role"] in ROLES and isinstance(m["content"], str) for m in messages)
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"].strip()
    json.dumps(out)  # what to_prompt_completion and the manifest fingerprint consume


def _jsonl_line(value) -> str:
    try:
        return json.dumps(value)
    except ValueError:
        return "NaN"


jsonl_text = st.text(max_size=200) | st.lists(rows.map(_jsonl_line) | st.text(max_size=20), max_size=5).map(
    "\n".join)


@SETTINGS
@given(jsonl_text)
def test_jsonl_text_raises_only_dataset_error(text):
    try:
        parsed = rows_from_jsonl_text(text, "d.jsonl")
    except DatasetError as error:
        assert str(error).startswith("d.jsonl, line ")
        return
    for i, row in enumerate(parsed):
        try:
            normalise_row(row, f"d.jsonl row {i}")
        except DatasetError:
            pass


def test_deeply_nested_json_is_a_dataset_error_not_a_recursion_crash():
    with pytest.raises(DatasetError, match="line 1.*nested too deeply"):
        rows_from_jsonl_text("[" * 100_000 + "]" * 100_000, "d.jsonl")
