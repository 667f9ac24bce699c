"""The trainer a notebook builds in view is the one loralab builds in one call (torchrun workers, `loralab eval`).

Each training notebook writes the knobs a reader tunes into TRL's config (``SFTConfig``, ``DPOConfig``...,
``GRPOConfig``) and adds loralab's settings with ``**trainer_settings(...)`` (``preference_settings``,
``grpo_settings``); ``build_trainer`` and its siblings build the same config from ``sft_args`` (...) alone. The
knobs written in the cell must be exactly the ``CELL_KNOBS`` the settings leave out, each read from the config.
Precision follows the device as Unsloth's ``dtype=None`` does.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from loralab.params.grpo_config import GrpoConfig
from loralab.params.preference_config import PreferenceConfig
from loralab.params.run_config import RunConfig
from loralab.train import grpo_trainer, preference_trainer, trainer

REPO = Path(__file__).resolve().parents[1]
# notebook: (its config call, the knobs it writes, the settings it adds, the settings' name, every argument)
CASES = {
    "01_qlora_finetune": ("SFTConfig", trainer.CELL_KNOBS, trainer.trainer_settings(RunConfig(), "out", False),
                          "trainer_settings", trainer.sft_args(RunConfig(), "out", False)),
    "04_preference_tuning": ("Config", preference_trainer.CELL_KNOBS,
                             preference_trainer.preference_settings(PreferenceConfig(), "out"), "preference_settings",
                             preference_trainer.preference_args(PreferenceConfig(), "out", False)),
    "05_grpo": ("GRPOConfig", grpo_trainer.CELL_KNOBS, grpo_trainer.grpo_settings(GrpoConfig(), "out", False),
                "grpo_settings", grpo_trainer.grpo_args(GrpoConfig(), "out", False)),
}


def _config_call(name: str, call: str) -> ast.Call:
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and f"{call}(" in cell.source:
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == call:
                    return node
    raise AssertionError(f"{name}: no {call}(...) in a code cell")


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_notebook_writes_out_exactly_the_knobs_the_settings_leave_out(name):
    call, knobs, settings, settings_name, every = CASES[name]
    node = _config_call(name, call)
    written = {k.arg: ast.unparse(k.value) for k in node.keywords if k.arg}
    assert set(written) == set(knobs), f"{name}: {call}(...) writes {sorted(written)}, CELL_KNOBS {sorted(knobs)}"
    for knob, value in written.items():
        assert value == f"cfg.{knob}" or (knob, value) == ("reward_weights", "data.weights"), (knob, value)
    splats = [ast.unparse(k.value) for k in node.keywords if k.arg is None]
    assert len(splats) == 1 and splats[0].startswith(f"{settings_name}(cfg,"), splats
    assert set(settings) | set(knobs) == set(every) and not set(settings) & set(knobs), name


def test_precision_follows_the_device_as_unsloths_dtype_none_does():
    t4, a100, h100 = (7, 5), (8, 0), (9, 0)
    assert trainer.precision_for(t4) == {"bf16": False, "fp16": True, "use_cpu": False}
    assert trainer.precision_for(a100) == trainer.precision_for(h100) == {"bf16": True, "fp16": False, "use_cpu": False}
    assert trainer.precision_for(None) == {"bf16": False, "fp16": False, "use_cpu": True}
    args = trainer.sft_args(RunConfig(), "out", has_eval=False)  # this CPU machine
    assert (args["bf16"], args["fp16"], args["use_cpu"]) == (False, False, True)
