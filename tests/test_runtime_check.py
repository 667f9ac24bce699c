"""What this machine cannot run is refused before any model loads (notebook cell and `loralab run`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from loralab.cli import main as cli_main
from loralab.params import runtime_check
from loralab.params.errors import ParamsError
from loralab.params.notebook import params_from_namespace
from loralab.params.run_config import validate_params
from loralab.params.runtime_check import RuntimeCheckError, check_runtime, known_optimizers, replaced_on_cpu


def run_main(argv: list[str]) -> int:
    """``loralab run ARGV`` through the command line's one error boundary (loralab.cli)."""
    return cli_main(["run", *argv])


REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = str(REPO / "notebooks/01_qlora_finetune.ipynb")
PARAMS = REPO / "params/01_qlora_finetune"


def test_cpu_safe_defaults_pass():
    check_runtime(validate_params({}))


def _without_cuda(monkeypatch) -> None:
    monkeypatch.setattr(runtime_check, "cuda_available", lambda: False)


@pytest.mark.parametrize("optim", ["adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit", "lion_8bit",
                                   "adamw_bnb_8bit", "adamw_torch_xla"])
def test_gpu_optimizers_are_refused_on_a_cpu_with_the_alternative(monkeypatch, optim):
    _without_cuda(monkeypatch)
    with pytest.raises(RuntimeCheckError, match=rf"optim: '{optim}' is a GPU optimizer.*optim: adamw_torch here"):
        check_runtime(validate_params({"optim": optim}))


def test_the_cpu_rule_is_the_one_unsloth_applies():
    """Every optimizer name: refused here exactly when Unsloth's CPU backend would swap it silently."""
    from types import SimpleNamespace

    from unsloth_zoo.cpu.trainer import normalize_cpu_training_arguments

    for name in known_optimizers():
        args = SimpleNamespace(optim=name, fp16=False, bf16=False, tf32=None, gradient_checkpointing=False)
        normalize_cpu_training_arguments(args)
        swapped = args.optim != name and not (name == "adamw_torch" and args.optim == "adamw_torch_fused")
        assert replaced_on_cpu(name) == swapped, name


def test_bitsandbytes_8bit_step_on_a_cpu_is_real_but_unsloth_swaps_it():
    """Measured: bitsandbytes' AdamW8bit steps on a CPU (8-bit state; bitsandbytes 0.50 and later, the first
    with a CPU kernel for it); Unsloth's CPU patch replaces it whatever the version."""
    import bitsandbytes as bnb
    import torch
    from packaging.version import Version
    from transformers import TrainingArguments

    if Version(bnb.__version__) >= Version("0.50.0") or torch.cuda.is_available():
        layer = torch.nn.Linear(128, 64)
        optimizer = bnb.optim.AdamW8bit(layer.parameters(), lr=1e-3)
        before = layer.weight.detach().clone()
        layer(torch.randn(4, 128)).pow(2).mean().backward()
        optimizer.step()
        assert not torch.equal(before, layer.weight.detach())
        assert optimizer.state[layer.weight]["state1"].dtype == torch.uint8
    if not torch.cuda.is_available():  # conftest imported unsloth, as every notebook does
        assert TrainingArguments(output_dir="unused", optim="adamw_8bit", report_to="none").optim != "adamw_8bit"


def test_unknown_optimizer_names_the_nearest_one():
    with pytest.raises(RuntimeCheckError, match=r"optim: 'adamw_8bitt' is not an optimizer.*Did you mean 'adamw_8bit'"):
        check_runtime(validate_params({"optim": "adamw_8bitt"}))


@pytest.mark.parametrize("optim, package", [("schedule_free_adamw", "schedulefree"), ("galore_adamw", "galore_torch"),
                                            ("lomo", "lomo_optim")])
def test_optimizer_that_needs_a_missing_package_is_refused(optim, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(RuntimeCheckError, match=rf"optim: '{optim}' cannot run on this .*install.*adamw_torch"):
        check_runtime(validate_params({"optim": optim}))


def test_4bit_without_bitsandbytes_is_refused(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(runtime_check.importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(RuntimeCheckError, match="load_in_4bit: true needs bitsandbytes.*load_in_4bit: false"):
        check_runtime(validate_params({"load_in_4bit": True}))
    check_runtime(validate_params({"load_in_4bit": False}))


def test_notebook_validation_cell_runs_the_check():
    namespace = {"optim": "adamw_8bitt", "lora_r": 8}  # a typo papermill would only warn about
    with pytest.raises(ParamsError, match="Did you mean 'adamw_8bit'"):
        params_from_namespace(namespace, set())


@pytest.mark.parametrize("extra, message", [
    (["-p", "lora_dropout", "1.0"], "lora_dropout"),
    (["-p", "load_in_4bit", "yes"], "load_in_4bit: write true or false"),
    (["-p", "hf_token", "hf_abc123"], "looks like a secret"),
    (["-p", "model_name", "my model"], "model_name"),
    (["-p", "lora_r", "[8"], "not a YAML value"),
])
def test_loralab_run_refuses_before_the_kernel_starts(tmp_path, capsys, extra, message):
    code = run_main([NOTEBOOK, "-f", str(PARAMS / "smoke.yaml"), *extra,
                     "--runs-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and message in out
    assert "hf_abc123" not in out
    assert not list(tmp_path.iterdir()), "no run folder may be created for refused params"


def test_loralab_run_checks_relative_model_folders_from_where_the_command_runs(tmp_path, capsys, monkeypatch):
    """The kernel runs in the folder the command ran from, so a relative folder is checked from there: one that
    exists only next to the notebook is not found."""
    import shutil

    folder = tmp_path / "nb"
    folder.mkdir()
    shutil.copy(NOTEBOOK, folder / "01_qlora_finetune.ipynb")
    for model in (tmp_path / "my-model", folder / "beside-the-notebook"):
        model.mkdir()
        (model / "config.json").write_text("{}")
        (model / "model.safetensors").write_bytes(b"")  # only present: nothing loads it here
    monkeypatch.chdir(tmp_path)
    args = [str(folder / "01_qlora_finetune.ipynb"), "-p", "lora_r", "0", "--runs-root", str(tmp_path / "runs")]
    assert run_main([*args, "-p", "model_name", "./my-model"]) == 2
    out = capsys.readouterr().out
    assert "lora_r: Input" in out and "config.json" not in out  # only the planted error: the folder was found
    assert run_main([*args, "-p", "model_name", "./beside-the-notebook"]) == 2
    assert "no config.json" in capsys.readouterr().out


def test_loralab_run_skips_only_the_slow_transformers_part():
    """An optimizer typo passes the quick pre-kernel check; the notebook's validation cell refuses it."""
    from loralab.params.runtime_check import validate_params_for_this_machine

    assert validate_params_for_this_machine({"optim": "adamw_torh"}).optim == "adamw_torh"
    with pytest.raises(RuntimeCheckError, match="Did you mean 'adamw_torch'"):
        check_runtime(validate_params({"optim": "adamw_torh"}))


def test_loralab_run_refuses_gpu_params_on_a_cpu(tmp_path, capsys, monkeypatch):
    _without_cuda(monkeypatch)
    code = run_main([NOTEBOOK, "-f", str(PARAMS / "colab_t4.yaml"),
                     "--runs-root", str(tmp_path)])
    assert code == 2 and "optim: 'adamw_8bit' is a GPU optimizer" in capsys.readouterr().out
    assert not list(tmp_path.iterdir())


def test_config_and_planner_stay_torch_free():
    code = ("import sys, loralab.params.run_config, loralab.plan.cli, loralab.params.yaml_reader, loralab.model.hub_token; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loralab_run_refuses_an_unknown_name_for_a_notebook_without_a_validator(tmp_path, capsys):
    """Notebook 02 has no params model; a misspelt parameter is still refused before the kernel starts."""
    notebook = REPO / "notebooks/02_sweep_report.ipynb"
    args = [str(notebook), "-p", "sweep_dri", "sweeps/rank", "--runs-root", str(tmp_path / "runs")]
    assert run_main(args) == 2
    out = capsys.readouterr().out
    assert "-p sweep_dri: unknown parameter 'sweep_dri'. Did you mean 'sweep_dir'?" in out
    assert not (tmp_path / "runs").exists(), "no run folder may be created for refused params"


def test_llama_cpp_gets_the_threads_a_launcher_gave_this_process(monkeypatch):
    """llama.cpp ignores OMP_NUM_THREADS; loralab passes it on (torchrun, sweeps --jobs and the test processes
    set it), so two processes sharing the cores do not each spin two llama.cpp threads."""
    from loralab.params.runtime_check import thread_budget, usable_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_budget() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    assert thread_budget() == usable_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert thread_budget() == usable_cores()


CUDA_CHECK = r"""
import sys
from loralab.params.runtime_check import cuda_available, torch_has_gpu_build
answer = cuda_available()
imported = "torch" in sys.modules
import torch
print(answer == torch.cuda.is_available(), imported == torch_has_gpu_build())
"""


def test_the_cuda_check_agrees_with_torch_and_imports_it_only_for_a_gpu_build():
    done = subprocess.run([sys.executable, "-c", CUDA_CHECK], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


@pytest.mark.parametrize(("version_py", "gpu_build"), [
    ("cuda: Optional[str] = None\nhip: Optional[str] = None\n", False),
    ("cuda = None\nhip = None\n", False),
    ("cuda: Optional[str] = '12.8'\nhip: Optional[str] = None\n", True),
    ("cuda: Optional[str] = None\nhip: Optional[str] = '6.4.1'\n", True),
    ("hip = None\n", True),  # a version.py of another shape: torch itself is asked
    (None, True),            # no version.py
])
def test_a_torch_build_without_cuda_or_rocm_is_read_from_its_version_file(tmp_path, monkeypatch, version_py, gpu_build):
    package = tmp_path / "torch"
    package.mkdir()
    (package / "__init__.py").write_text("")
    if version_py is not None:
        (package / "version.py").write_text("from typing import Optional\n__version__ = '2.13.0'\n" + version_py)
    real = importlib.util.find_spec
    monkeypatch.setattr(runtime_check.importlib.util, "find_spec",
                        lambda name, *a: importlib.util.spec_from_file_location(
                            "torch", package / "__init__.py", submodule_search_locations=[str(package)])
                        if name == "torch" else real(name, *a))
    assert runtime_check.torch_has_gpu_build() is gpu_build
