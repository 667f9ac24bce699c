"""Adapters on the tiny random model: notebook 03 under papermill, then checks on what it saved.

Notebook 03 trains two small adapters (json, caps) on a 16-bit base (random weights: these are
mechanics, and every check compares the adapter with its own base, not with a learned answer); one module-scoped run is the
fixture every test here shares. The tests then check, each with its own loads:

* verified loading reproduces the trained model's logits, and refuses a changed base before loading;
* PEFT's own ``PeftModel.from_pretrained`` in a process without unsloth or loralab gives the same logits;
* the hot-swap server's per-adapter logits equal each adapter loaded alone, and a mixed batch equals
  per-adapter batches row by row;
* the merged folder, loaded with plain transformers, reproduces base + adapter (and its manifest holds the
  parity check against the model as trained).

Tolerances are stated against the adapter's own effect on the logits, so a test cannot pass by the
adapter doing nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]
BASE = TINY_MODEL
pytestmark = pytest.mark.slow

PROMPTS = [
    [{"role": "user", "content": "What is the capital of Peru?"}],
    [{"role": "user", "content": "How many legs does a spider have?"}],
    [{"role": "user", "content": "What is 12 plus 30?"}],
    [{"role": "user", "content": "Give the antonym of hot."}],
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """Notebook 03 executed with small settings; its output folder holds the adapters and metrics.json."""
    import papermill

    out = tmp_path_factory.mktemp("nb03")
    papermill.execute_notebook(
        str(REPO / "notebooks/03_adapters.ipynb"), str(out / "03_adapters.ipynb"),
        parameters={"max_steps": 4, "per_device_train_batch_size": 4, "questions": 3, "max_new_tokens": 12,
                    "merge_parity_prompts": 4, "merge_parity_tokens": 12, "run_dir": str(out),
                    "model_name": BASE},
        kernel_name="python3", cwd=str(REPO / "notebooks"), progress_bar=False, execution_timeout=900)
    return out


@pytest.fixture(scope="module")
def results(run) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def server(run):
    from loralab.adapters.serving import AdapterServer

    server = AdapterServer(BASE, load_in_4bit=False)
    for name in ("json", "caps"):
        server.add_adapter(name, run / "adapters" / name)
    return server


def _verified_logits(adapter_dir: Path, **kwargs):
    from loralab.adapters.save import probe_logits
    from loralab.adapters.verified_loading import load_verified_adapter

    model, tokenizer = load_verified_adapter(adapter_dir, **kwargs)
    input_ids, logits = probe_logits(model, tokenizer)
    with model.disable_adapter():
        _, base_logits = probe_logits(model, tokenizer)
    return model, tokenizer, input_ids, logits, base_logits


def test_notebook_results(run, results):
    """What the notebook reports: adapters trained and verified, refusals, memory, mixed batch, merge."""
    assert set(results["adapters"]) == {"json", "caps"}
    for name, path in results["adapters"].items():
        manifest = json.loads((Path(path) / "loralab_manifest.json").read_text())
        assert manifest["extra"]["behaviour"] == name and manifest["base_quantization"] == "16-bit"
        assert (Path(path) / "adapter_model.safetensors").is_file() and not list(Path(path).glob("*.bin"))
        assert len(results["training"][name]["losses"]) == 4
    for label, message in results["refusals"].items():
        assert message and "Refusing" in message, label
    assert "chat template" in results["refusals"]["changed chat template"]
    assert "weights" in results["refusals"]["one weight changed"]
    memory = {row["name"]: row for row in results["serving"]["memory"]}
    for name in ("json", "caps"):
        assert 0 < memory[name]["share_of_base_%"] < 5, memory[name]  # r=8 adapter vs the base's 6 MB
    assert set(results["serving"]["switch_seconds"]) == {"json", "caps"}  # recorded, never asserted: timing
    merge = results["merge"]
    assert merge["max_abs_diff_fp32"] < 1e-3 * max(1.0, merge["adapter_effect"]), merge
    assert merge["argmax_agreement_saved"] >= 0.9, merge
    # a 16-bit adapter merges into the original weights; the bf16 folder stays close to the model as trained
    # (random weights: near-tied logits let a greedy pick flip, so the check is on KL and top-1, not "passed")
    assert merge["merge_into"] == "original" and merge["base_quantization"] == "16-bit", merge
    parity = merge["parity"]
    assert parity["prompts"] == 4 and parity["mean_kl"] < 1e-2 and parity["top1_agreement"] >= 0.9, parity
    merged_manifest = json.loads((Path(merge["path"]) / "loralab_manifest.json").read_text())
    assert merged_manifest["parity"]["mean_kl"] == pytest.approx(parity["mean_kl"])
    assert (run / "03_adapters.ipynb").is_file() and "GGUF" in results["gguf_status"]
    gguf = results["gguf"]  # F16 and the default Q4_K_M, run in llama.cpp against the model as trained
    assert [row["format"] for row in gguf["table"]] == ["gguf-f16", "gguf-q4_k_m"], gguf["table"]
    # each file ran in llama.cpp against the model as trained; quantization costs something and parity sees it
    f16, q4 = gguf["table"]
    assert f16["top1"] >= 0.9 and f16["mean_kl"] < q4["mean_kl"], gguf["table"]
    assert all(isinstance(row["passed"], bool) for row in gguf["table"]) and q4["json_shape"] is not None
    folder = Path(gguf["folder"])
    assert (folder / "model.Q4_K_M.gguf").is_file() and (folder / "Modelfile").is_file()
    assert "FROM ./model.Q4_K_M.gguf" in (folder / "Modelfile").read_text()
    manifest = json.loads((folder / "loralab_manifest.json").read_text())
    assert manifest["files"][1]["parity"]["mean_kl"] == pytest.approx(gguf["table"][1]["mean_kl"])


def test_manifest_pins_the_real_base(run):
    from loralab.adapters.manifest import read_manifest
    from loralab.model.embedded import resolve_model_path
    from loralab.model.fingerprints import file_sha256

    manifest = read_manifest(run / "adapters" / "json")
    weights = Path(resolve_model_path(BASE)) / "model.safetensors"
    assert manifest.base.weight_files == {"model.safetensors": file_sha256(weights, use_cache=False)}
    assert manifest.lora.r == 8 and manifest.lora.scale == pytest.approx(2.0)
    # "all-linear" as PEFT means it: every linear layer of both blocks, none of lm_head
    assert {name.rsplit(".", 1)[-1] for name in manifest.lora.target_modules} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(manifest.lora.target_modules) == 14
    assert manifest.dataset.sha256 != read_manifest(run / "adapters" / "caps").dataset.sha256


def test_verified_load_reproduces_training_logits(run):
    from safetensors.torch import load_file

    from loralab.adapters.train_and_save import reference_logits_path

    adapter = run / "adapters" / "json"
    from loralab.adapters.verified_loading import BaseMismatchWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, input_ids, logits, base_logits = _verified_logits(adapter)
    assert not [w for w in caught if issubclass(w.category, BaseMismatchWarning)], "a verified load warns"
    reference = load_file(str(reference_logits_path(adapter)))
    assert input_ids.tolist() == reference["input_ids"].tolist()
    diff = (logits - reference["logits"]).abs().max().item()
    effect = (base_logits - reference["logits"]).abs().max().item()
    assert diff < 1e-2 and effect > 100 * diff, (diff, effect)


def test_changed_base_is_refused_before_loading(run, monkeypatch):
    import loralab.model.loading
    from loralab.adapters.perturbed_base import base_with_changed_template, base_with_one_weight_changed
    from loralab.adapters.verified_loading import load_verified_adapter

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the base was checked")

    monkeypatch.setattr(loralab.model.loading, "load_model", no_load)
    adapter = run / "adapters" / "caps"
    with base_with_one_weight_changed(BASE) as other, pytest.raises(ValueError, match=r"weights .*safetensors"):
        load_verified_adapter(adapter, str(other))
    with base_with_changed_template(BASE) as other, pytest.raises(ValueError, match="chat template"):
        load_verified_adapter(adapter, str(other))


def test_override_and_missing_manifest_load_with_warnings(run, tmp_path):
    from loralab.adapters.perturbed_base import base_with_changed_template
    from loralab.adapters.verified_loading import BaseMismatchWarning, load_verified_adapter

    with base_with_changed_template(BASE) as other:
        with pytest.warns(BaseMismatchWarning, match="allow_base_mismatch=True"):
            model, _ = load_verified_adapter(run / "adapters" / "caps", str(other), allow_base_mismatch=True)
        assert "default" in model.peft_config
    bare = shutil.copytree(run / "adapters" / "caps", tmp_path / "caps-no-manifest")
    (bare / "loralab_manifest.json").unlink()
    with pytest.warns(BaseMismatchWarning, match="no loralab_manifest.json"):
        load_verified_adapter(bare, BASE, load_in_4bit=False, max_seq_length=128)


INTEROP = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
from safetensors.torch import load_file, save_file
base_dir, adapter_dir, dtype, io = sys.argv[1:5]
model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=getattr(torch, dtype))
model = PeftModel.from_pretrained(model, adapter_dir).eval()
ids = load_file(io + "/in.safetensors")["input_ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits.float()
save_file({"logits": logits.contiguous()}, io + "/out.safetensors")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("unsloth", "loralab", "trl"))))
"""


def test_plain_peft_reproduces_loralab_logits(run, tmp_path):
    """A process that never imports unsloth or loralab loads the adapter with PEFT and gets our logits."""
    from safetensors.torch import load_file, save_file

    from loralab.model.embedded import resolve_model_path

    model, _, input_ids, logits, base_logits = _verified_logits(run / "adapters" / "json")
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    save_file({"input_ids": input_ids.contiguous()}, str(tmp_path / "in.safetensors"))
    done = subprocess.run([sys.executable, "-c", INTEROP, resolve_model_path(BASE), str(run / "adapters" / "json"),
                           dtype, str(tmp_path)], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], "the interop process imported unsloth/loralab"
    peft_logits = load_file(str(tmp_path / "out.safetensors"))["logits"]
    diff = (peft_logits - logits).abs().max().item()
    effect = (base_logits - logits).abs().max().item()
    # same weights and dtype; kernels may differ between Unsloth's patched forward and plain transformers
    assert diff < 0.05 * effect, (diff, effect, dtype)
    assert (peft_logits.argmax(-1) == logits.argmax(-1)).float().mean().item() >= 0.95


def test_hot_swap_equals_each_adapter_alone(run, server):
    for name in ("json", "caps"):
        model, _, _, alone, alone_base = _verified_logits(run / "adapters" / name)
        messages = [{"role": "user", "content": "What is the capital of Peru?"}]
        served = server.logits([messages], name)
        assert served.shape == alone.shape
        diff = (served - alone).abs().max().item()
        effect = (alone - alone_base).abs().max().item()
        assert diff < 1e-3 * max(1.0, effect) + 1e-4, (name, diff, effect)
        base = server.logits([messages], None)
        assert (base - alone_base).abs().max().item() < 1e-3 * max(1.0, effect) + 1e-4
        del model


def test_mixed_batch_equals_per_adapter(server):
    choice = ["json", "caps", None, "caps"]
    mixed = server.logits_mixed(PROMPTS, choice)
    separate = {name: server.logits(PROMPTS, name) for name in ("json", "caps", None)}
    spread = (separate["json"] - separate["caps"]).abs().max().item()
    assert spread > 0.1, "the two adapters must differ for this test to mean anything"
    for row, name in enumerate(choice):
        diff = (mixed[row] - separate[name][row]).abs().max().item()
        assert diff < 1e-3 * spread + 1e-4, (row, name, diff, spread)
    texts = server.generate_mixed(PROMPTS, choice, max_new_tokens=8)
    assert len(texts) == len(PROMPTS) and all(isinstance(t, str) for t in texts)


def test_merged_folder_matches_base_plus_adapter(run, results):
    """Plain transformers on the saved folder vs base + adapter through PEFT, both float32."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.adapters.save import probe_logits
    from loralab.model.embedded import resolve_model_path

    merged_dir = Path(results["merge"]["path"])
    assert (merged_dir / "model.safetensors").is_file() and (merged_dir / "config.json").is_file()
    assert not list(merged_dir.glob("adapter_*")), "a merged folder needs no adapter files"
    tokenizer = AutoTokenizer.from_pretrained(str(merged_dir))
    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
    _, merged_logits = probe_logits(merged, tokenizer)
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(BASE), dtype=torch.float32).eval()
    _, base_logits = probe_logits(base, tokenizer)
    peft_model = PeftModel.from_pretrained(base, str(run / "adapters" / "json")).eval()
    _, adapted = probe_logits(peft_model, tokenizer)
    diff = (merged_logits - adapted).abs().max().item()
    effect = (adapted - base_logits).abs().max().item()
    # bf16 rounding of W + scale*B@A: measured max |diff| well below the adapter's effect
    assert diff < 0.1 * effect, (diff, effect)
    assert (merged_logits.argmax(-1) == adapted.argmax(-1)).float().mean().item() >= 0.9
