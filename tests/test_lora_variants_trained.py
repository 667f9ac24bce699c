"""Every LoRA variant trained for real on the tiny model: trains, saves, reloads verified, merges with parity.

One module-scoped fixture trains all variants in this process through the package's own calls
(``load_model``, ``attach_lora``, ``build_trainer``, ``save_adapter``, ``write_manifest``: what notebook
01 does), a few steps each at a learning rate that moves the random model visibly. PiSSA and OLoRA run
on the 16-bit base (a 4-bit one is refused), and so does DoRA (on a CPU machine DoRA on the 4-bit base is
refused: ``loralab.params.runtime_check.check_dora_base``).
"""

from __future__ import annotations

import gc
import json
import math
import warnings
from pathlib import Path

import pytest

from conftest import TINY_MODEL

pytestmark = pytest.mark.slow

STEPS = 3
COMMON = {"model_name": TINY_MODEL, "max_steps": STEPS, "learning_rate": 5e-3, "warmup_steps": 0, "lora_r": 4,
          "lora_alpha": 8, "per_device_train_batch_size": 4, "max_seq_length": 128, "save_steps": 0,
          "eval_dataset": "", "eval_scorers": [], "lora_dropout": 0.0}
VARIANTS = {
    "lora": {"load_in_4bit": False},
    "rslora": {"load_in_4bit": False, "use_rslora": True, "lora_r": 16},
    "dora": {"load_in_4bit": False, "use_dora": True},  # on a 4-bit base it is refused on CPUs (runtime_check)
    "pissa": {"load_in_4bit": False, "init_lora_weights": "pissa"},
    "olora": {"load_in_4bit": False, "init_lora_weights": "olora"},
    "loraplus": {"load_in_4bit": False, "loraplus_lr_ratio": 16.0},
}
QUICK = {"parity_prompts_n": 3, "parity_new_tokens": 6}


def _train(cfg, rows, folder: Path) -> dict:
    """Train ``cfg`` and save adapter, reference logits and manifest; what the checks below need."""

    from loralab.adapters.manifest import write_manifest
    from loralab.adapters.save import save_adapter, save_reference_logits
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.model.loading import attach_lora, count_parameters, load_model, lora_layer_table
    from loralab.runs.report import adapter_summary
    from loralab.train.trainer import build_trainer

    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    trainable, total = count_parameters(model)
    layers = lora_layer_table(model)
    trainer = build_trainer(model, tokenizer, to_prompt_completion(rows), cfg, output_dir=folder / "checkpoints")
    trainer.train()
    groups = sorted({group["initial_lr"] for group in trainer.optimizer.param_groups if group["params"]})
    save_adapter(model, tokenizer, folder / "adapter")
    save_reference_logits(model, tokenizer, folder / "reference_logits.safetensors")
    write_manifest(folder / "adapter", cfg, tokenizer=tokenizer, dataset_rows=rows)
    out = {"trainable": trainable, "total": total, "layers": layers, "lrs": groups,
           "summary": adapter_summary(model, layers, trainable, total),
           "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h]}
    del trainer, model
    gc.collect()
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, dict]:
    from loralab.data.chat_rows import read_jsonl
    from loralab.data.json_answers import data_file
    from loralab.params.run_config import validate_params

    rows = [{"messages": row["messages"]} for row in read_jsonl(data_file("train"))][:24]
    root = tmp_path_factory.mktemp("variants")
    out = {}
    for name, params in VARIANTS.items():
        cfg = validate_params(COMMON | params)
        out[name] = _train(cfg, rows, root / name) | {"cfg": cfg, "folder": root / name}
    return out


def test_each_variant_trains_and_counts_its_weights(trained):
    for name, run in trained.items():
        assert len(run["losses"]) == STEPS and all(math.isfinite(loss) for loss in run["losses"]), name
        assert "matches: True" in run["summary"], (name, run["summary"])
        assert sum(layer.params for layer in run["layers"]) == run["trainable"], name
    plain, dora = trained["lora"], trained["dora"]
    assert dora["trainable"] - plain["trainable"] == sum(layer.d for layer in dora["layers"])
    assert all(layer.magnitude == layer.d for layer in dora["layers"])
    assert "DoRA: r=4, alpha=8, scale alpha/r = 8/4 = 2" in dora["summary"]
    assert "rsLoRA: r=16, alpha=8, scale alpha/sqrt(r) = 8/sqrt(16) = 2" in trained["rslora"]["summary"]
    assert "LoRA (PiSSA init)" in trained["pissa"]["summary"]


def test_loraplus_gives_b_a_larger_learning_rate(trained):
    assert trained["lora"]["lrs"] == [5e-3]
    assert trained["loraplus"]["lrs"] == pytest.approx([5e-3, 5e-3 * 16])


def test_manifest_records_the_variant_and_pissa_is_saved_as_plain_lora(trained):
    from loralab.adapters.manifest import read_manifest

    for name, run in trained.items():
        manifest = read_manifest(run["folder"] / "adapter")
        assert manifest.variant.name == run["cfg"].lora_variant, name
        config = json.loads((run["folder"] / "adapter" / "adapter_config.json").read_text())
        converted = name in ("pissa", "olora")
        assert manifest.variant.converted_to_lora is converted
        # PEFT's conversion: [A | A0], [B | -B0] at rank 2r, alpha doubled, init true (the original base)
        assert config["r"] == (2 if converted else 1) * run["cfg"].lora_r, name
        assert config["init_lora_weights"] is True  # converted PiSSA/OLoRA load as plain LoRA
        assert config["use_dora"] is (name == "dora") and config["use_rslora"] is (name == "rslora")
    assert read_manifest(trained["rslora"]["folder"] / "adapter").lora.scale_formula == "alpha/sqrt(r)"


def test_each_variant_reloads_verified_on_its_original_base(trained):
    """The saved adapter on the base as it is on disk gives the trained model's logits (PiSSA/OLoRA: converted)."""
    from safetensors.torch import load_file

    from loralab.adapters.save import probe_logits
    from loralab.adapters.verified_loading import load_verified_adapter

    for name, run in trained.items():
        model, tokenizer = load_verified_adapter(run["folder"] / "adapter")
        _, logits = probe_logits(model, tokenizer)
        with model.disable_adapter():
            _, base_logits = probe_logits(model, tokenizer)
        reference = load_file(str(run["folder"] / "reference_logits.safetensors"))["logits"]
        diff = (logits - reference).abs().max().item()
        effect = (base_logits - reference).abs().max().item()
        assert diff < 1e-3 and effect > 100 * diff, (name, diff, effect)
        del model
        gc.collect()


def test_each_variant_merges_with_parity(trained, tmp_path):
    """The fp32 merge reproduces the adapter on its base, and the saved bf16 folder stays within the export's KL
    bound. Top-1 and greedy agreement are recorded, not asserted: the random tiny model's logits are nearly flat,
    so bf16 rounding of the merged weights flips near-ties whatever the variant (test_merge_parity.py does the
    same); on the embedded model they are checked by test_merge_dequantized.py."""
    from loralab.adapters.manifest import read_manifest
    from loralab.export.merge import merge_adapter
    from loralab.export.parity import PARITY_THRESHOLDS, ExportDriftWarning

    bound = PARITY_THRESHOLDS["merged-16bit"].max_mean_kl
    for name, run in trained.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExportDriftWarning)
            result = merge_adapter(run["folder"] / "adapter", tmp_path / name, **QUICK)
        assert result.parity is not None and result.parity.mean_kl <= bound, (name, result.parity.summary())
        assert result.parity.top1_agreement >= 0.75, (name, result.parity.summary())
        assert result.max_abs_diff_fp32 < 1e-3 * max(1.0, result.adapter_effect), name
        assert result.merge_into == "original"
        assert read_manifest(tmp_path / name).variant.name == run["cfg"].lora_variant


def test_gguf_lora_is_refused_for_dora_and_rslora_but_not_converted_pissa(trained):
    from loralab.export.gguf_export import check_gguf_lora_variant

    for name in ("dora", "rslora"):
        with pytest.raises(ValueError, match="cannot apply a .* as a GGUF LoRA: export with lora=False"):
            check_gguf_lora_variant(trained[name]["folder"] / "adapter")
    for name in ("lora", "pissa", "olora", "loraplus"):
        check_gguf_lora_variant(trained[name]["folder"] / "adapter")
