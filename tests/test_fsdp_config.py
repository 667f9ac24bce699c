"""FSDP (``parallel_strategy: fsdp``): what a GPU run hands accelerate and Unsloth, checked without a GPU.

accelerate builds its FSDP plugin only for GPU-type distributed states, so sharded training is not
executed on these CPU machines (loralab refuses it here: tests/test_bad_input.py); these tests pin the
configuration a GPU run gets.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loralab.params.run_config import RunConfig
from loralab.train.trainer import common_args
from loralab.train.worker import strategy_environment


def test_ddp_passes_no_fsdp_arguments():
    from trl import SFTConfig

    args = SFTConfig(**common_args(RunConfig(num_processes=2), "unused", has_eval=False))
    assert not args.fsdp and args.fsdp_plugin_args is None
    assert strategy_environment(RunConfig(num_processes=2)) == {}


def test_fsdp_reaches_accelerate_as_an_fsdp2_plugin_sharding_per_decoder_block():
    from accelerate.utils import FullyShardedDataParallelPlugin
    from trl import SFTConfig

    cfg = RunConfig(num_processes=2, parallel_strategy="fsdp")
    args = SFTConfig(**common_args(cfg, "unused", has_eval=False))
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"  # the model's _no_split_modules
    assert str(plugin.state_dict_type) == "StateDictType.FULL_STATE_DICT"


def _unsloth_gpu_module(name: str):
    """An Unsloth module of its GPU path, read from its file (``unsloth.models`` imports Triton kernels)."""
    import importlib.util

    import unsloth

    spec = importlib.util.spec_from_file_location(name, Path(unsloth.__file__).parent / "models" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fsdp_makes_unsloth_store_the_4bit_base_in_a_dtype_fsdp2_can_shard(monkeypatch):
    import torch
    from transformers import BitsAndBytesConfig
    from unsloth.fsdp2_launch import fsdp_version_from_env  # what Unsloth's loader asks before quantizing

    env = strategy_environment(RunConfig(num_processes=2, parallel_strategy="fsdp"))
    for name in ("UNSLOTH_FSDP2", "FSDP_VERSION", "ACCELERATE_USE_FSDP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it in every worker
    assert fsdp_version_from_env() == 0
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert fsdp_version_from_env() == 2  # the loader then calls set_fsdp2_quant_storage on its config
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    assert config.bnb_4bit_quant_storage == torch.uint8  # what FSDP2 cannot shard
    _unsloth_gpu_module("fsdp2_qlora").set_fsdp2_quant_storage(config, torch.bfloat16)
    assert config.bnb_4bit_quant_storage == torch.bfloat16


def test_fsdp_needs_several_processes_and_gpus():
    from loralab.params.runtime_check import RuntimeCheckError, check_strategy

    with pytest.raises(ValueError, match="num_processes and num_nodes are 1"):
        RunConfig(parallel_strategy="fsdp")
    RunConfig(num_nodes=2, master_port=29500, parallel_strategy="fsdp")
    with pytest.raises(RuntimeCheckError, match="accelerate runs FSDP only on GPUs"):
        check_strategy("fsdp", on_gpu=False)
    check_strategy("fsdp", on_gpu=True)
    check_strategy("ddp", on_gpu=False)
