"""Notebook 05 (GRPO) run by papermill: once on the embedded model with its smoke params (learning), twice on the
tiny random model (mechanics from the tiny SFT adapter that notebook 04's DPO run starts from too, with
beta > 0, then resumed as if killed after its first checkpoint; a broken reward refused before training).

The learning claim: GRPO with the embedded answer-format prompts and rewards raises the held-out reward (greedy
replies to 16 questions the training prompts never show) in 10 steps of 2 prompts x 4 completions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import EMBEDDED_MODEL, TINY_MODEL
from loralab.params.errors import RunFailed
from loralab.params.yaml_reader import read_params_file

REPO = Path(__file__).resolve().parents[1]
NB05 = REPO / "notebooks" / "05_grpo.ipynb"
SMOKE = REPO / "params" / "05_grpo" / "smoke.yaml"
FORMAT = "regex:^The answer is [^.!?]+[.!?]$"

pytestmark = pytest.mark.slow

TINY = {"model_name": TINY_MODEL, "load_in_4bit": False, "lora_r": 4, "lora_alpha": 8, "num_generations": 2,
        "per_device_train_batch_size": 4, "max_completion_length": 8, "max_steps": 2, "eval_examples": 2,
        "max_new_tokens": 8, "show_examples": 1, "completions_every": 1, "save_steps": 0}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("grpo")


@pytest.fixture(scope="module")
def learned(folder) -> dict:
    """The smoke params on the embedded model: the learning claim."""
    from loralab.runs.runner import run_notebook

    run = run_notebook(NB05, read_params_file(SMOKE), runs_root=folder / "runs", run_name="smoke", timeout_s=900,
                       params_files=[str(SMOKE)])
    return {"dir": run, "metrics": json.loads((run / "metrics.json").read_text())}


@pytest.fixture(scope="module")
def from_sft(folder, tiny_sft_adapter) -> dict:
    """Mechanics on the tiny model: from the SFT adapter, with a KL term (beta > 0: TRL's frozen 'ref' copy)."""
    from loralab.runs.runner import run_notebook

    params = {**TINY, "sft_adapter": str(tiny_sft_adapter), "beta": 0.04, "save_steps": 1}
    run = run_notebook(NB05, params, runs_root=folder / "runs", run_name="from-sft", timeout_s=900)
    return {"dir": run, "params": params, "metrics": json.loads((run / "metrics.json").read_text())}


@pytest.fixture(scope="module")
def resumed(folder, from_sft) -> dict:
    """from_sft as if killed after its first checkpoint (metrics.json and checkpoint-2 gone, completions.jsonl
    as the killed run left it), then the same params again: loralab run picks the unfinished folder."""
    import shutil

    from loralab.runs.runner import run_notebook

    run = from_sft["dir"]
    written = (run / "completions.jsonl").read_text().splitlines()
    (run / "metrics.json").unlink()
    shutil.rmtree(run / "checkpoints" / "checkpoint-2")
    again = run_notebook(NB05, from_sft["params"], runs_root=folder / "runs", timeout_s=900)
    return {"dir": again, "first": from_sft["dir"], "written_before": written,
            "metrics": json.loads((again / "metrics.json").read_text())}


def test_grpo_raises_the_held_out_reward_on_the_embedded_model(learned):
    m = learned["metrics"]
    assert m["params"]["model_name"] == EMBEDDED_MODEL
    assert set(m["rewards_before"]) == set(m["rewards_after"]) == {FORMAT, "contains"}
    assert m["reward_after"] > m["reward_before"], (m["rewards_before"], m["rewards_after"])
    assert m["rewards_after"][FORMAT] > m["rewards_before"][FORMAT], "the format reward is what 10 steps can teach"
    assert m["eval_examples"] == 16 and m["eval_rows_leaked"] == 0


def test_the_reward_log_has_each_reward_per_step_and_the_groups_had_spread(learned):
    steps = learned["metrics"]["reward_log"]
    assert [s["step"] for s in steps] == list(range(1, 11))
    for step in steps:
        for name in (FORMAT, "contains"):
            assert 0.0 <= step[f"rewards/{name}/mean"] <= 1.0 and f"rewards/{name}/std" in step
        assert 0.0 <= step["frac_reward_zero_std"] <= 1.0 and step["completions/mean_length"] > 0
        assert "kl" not in step, "beta 0: no reference pass, no KL"
    assert learned["metrics"]["frac_reward_zero_std_mean"] < 1.0, "some groups had spread: GRPO had a signal"
    assert (learned["dir"] / "rewards.png").stat().st_size > 5000


def test_sampled_completions_with_their_rewards_go_to_the_run_folder(learned):
    lines = [json.loads(line) for line in (learned["dir"] / "completions.jsonl").read_text().splitlines()]
    assert sorted({line["step"] for line in lines}) == [5, 10]
    assert all(len([x for x in lines if x["step"] == s]) == 8 for s in (5, 10)), "2 prompts x 4 completions"
    assert set(lines[0]["rewards"]) == {FORMAT, "contains"} and "advantage" in lines[0]


def test_the_preflight_and_the_frozen_base(learned):
    m = learned["metrics"]
    assert set(m["reward_preflight"]) == {FORMAT, "contains"}
    assert m["base_fingerprint_before"] == m["base_fingerprint_after"]
    assert (learned["dir"] / "adapter" / "adapter_model.safetensors").is_file()
    assert m["grpo"]["sft_adapter"] is None and m["grpo"]["rewards"] == [FORMAT, "contains"]


def test_from_an_sft_adapter_with_a_kl_term(from_sft, tiny_sft_adapter):
    m = from_sft["metrics"]
    # each reward apart under notebook 01's name too: loralab sweep makes each a "<reward> after" column
    assert m["eval_scores_after"] == m["rewards_after"] and set(m["eval_scores_before"]) == set(m["rewards_after"])
    lineage = m["grpo"]["sft_adapter"]
    assert lineage["path"] == str(tiny_sft_adapter.resolve())
    assert lineage["manifest_sha256"] == hashlib.sha256((tiny_sft_adapter / "loralab_manifest.json").read_bytes()).hexdigest()
    manifest = json.loads((from_sft["dir"] / "adapter" / "loralab_manifest.json").read_text())
    assert manifest["extra"]["grpo"]["sft_adapter"]["manifest_sha256"] == lineage["manifest_sha256"]
    assert manifest["extra"]["grpo"]["beta"] == 0.04
    assert all("kl" in step for step in m["reward_log"]), "beta > 0 logs the KL to the reference"
    assert not (from_sft["dir"] / "adapter" / "ref").exists(), "the reference copy is not saved"
    assert m["base_fingerprint_before"] == m["base_fingerprint_after"]


def test_the_sft_adapter_continues_on_unsloths_path(from_sft, tiny_sft_adapter):
    """The cell builds the adapter with Unsloth's get_peft_model in the SFT adapter's shape (r 8, alpha 16 over
    the cell's 4 and 8) and copies its weights in; the saved result keeps that shape."""
    executed = json.loads((from_sft["dir"] / NB05.name).read_text())
    printed = "".join(text for cell in executed["cells"] for out in cell.get("outputs", [])
                      for text in out.get("text", []))
    assert "from the SFT adapter's adapter_config.json: lora_r 8, lora_alpha 16" in printed
    saved = json.loads((from_sft["dir"] / "adapter" / "adapter_config.json").read_text())
    assert (saved["r"], saved["lora_alpha"]) == (8, 16)


def test_sft_weights_are_copied_into_unsloths_adapter(tiny_sft_adapter):
    from peft.utils import load_peft_weights
    from unsloth import FastLanguageModel

    from loralab.adapters.sft_start import adopt_sft_shape, load_sft_weights
    from loralab.model import resolve_model_path
    from loralab.params.grpo_config import GrpoConfig

    cfg = adopt_sft_shape(GrpoConfig(**{**TINY, "sft_adapter": str(tiny_sft_adapter)}))
    model, _ = FastLanguageModel.from_pretrained(model_name=resolve_model_path(cfg.model_name), max_seq_length=64,
                                                 load_in_4bit=False, dtype=None)
    model = FastLanguageModel.get_peft_model(model, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             target_modules=cfg.target_module_list, use_rslora=cfg.use_rslora)
    load_sft_weights(model, tiny_sft_adapter)
    saved = load_peft_weights(str(tiny_sft_adapter), device="cpu")
    params = dict(model.named_parameters())
    for key, value in saved.items():
        name = key.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
        assert params[name].detach().equal(value.to(params[name].dtype)), name
        assert params[name].requires_grad, name
    other = adopt_sft_shape(GrpoConfig(**{**TINY, "sft_adapter": str(tiny_sft_adapter)})).model_copy(update={"lora_r": 2})
    small = FastLanguageModel.get_peft_model(
        FastLanguageModel.from_pretrained(model_name=resolve_model_path(cfg.model_name), max_seq_length=64,
                                          load_in_4bit=False, dtype=None)[0],
        r=other.lora_r, lora_alpha=other.lora_alpha, target_modules=other.target_module_list)
    with pytest.raises(ValueError, match="do not fit the adapter built here"):
        load_sft_weights(small, tiny_sft_adapter)


def test_a_broken_reward_is_refused_before_any_training_step(folder):
    from loralab.runs.runner import run_notebook

    checker = folder / "broken_reward.py"
    checker.write_text("def two_per_completion(completions, **kwargs):\n    return [1.0, 0.0] * len(completions)\n")
    spec = f"python:{checker}:two_per_completion"
    with pytest.raises(RunFailed) as failed:
        run_notebook(NB05, {**TINY, "rewards": ["contains", spec]}, runs_root=folder / "runs", run_name="broken",
                     timeout_s=900)
    assert failed.value.ename == "ParamsError"
    assert failed.value.evalue == (f"reward {spec!r} returned 2 values for 1 completion(s); a reward function returns "
                                   "exactly one number per completion.")
    run = folder / "runs" / "broken"
    assert not (run / "completions.jsonl").exists() and not (run / "metrics.json").exists()
    assert not (run / "checkpoints").exists(), "refused before the trainer was built"


def test_metrics_keys_documented(learned):
    pages = (REPO / "docs" / "run-folder.md").read_text() + (REPO / "docs" / "grpo.md").read_text()
    undocumented = [key for key in learned["metrics"] if f"`{key}`" not in pages]
    assert not undocumented, f"docs/run-folder.md and docs/grpo.md do not document metrics keys {undocumented}"


def test_an_interrupted_run_resumes_from_its_checkpoint(resumed):
    m = resumed["metrics"]
    assert resumed["dir"] == resumed["first"], "the same params again must reuse the unfinished folder"
    assert m["resumed_from_step"] == 1
    assert [s["step"] for s in m["reward_log"]] == [1, 2]  # step 1 from the checkpoint's log, step 2 trained again
    assert (resumed["dir"] / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors").is_file()
    steps = [json.loads(line)["step"] for line in (resumed["dir"] / "completions.jsonl").read_text().splitlines()]
    before = [json.loads(line)["step"] for line in resumed["written_before"]]
    assert before.count(2) == steps.count(2) > 0 and steps.count(1) == before.count(1) > 0  # step 2 once, not twice
