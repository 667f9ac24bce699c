"""The command line: ``loralab --help`` lists every command; ``loralab run --check`` checks, reports, runs nothing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from loralab.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]
NB01 = str(REPO / "notebooks" / "01_qlora_finetune.ipynb")
SMOKE = str(REPO / "params" / "01_qlora_finetune" / "smoke.yaml")


def test_help_lists_every_command_with_a_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: loralab")
    for name in ("run", "plan", "sweep", "eval", "notebooks"):
        assert re.search(rf"^\s+{name}\s+\w", out, re.MULTILINE), f"{name} has no line in:\n{out}"
    assert set(COMMANDS) == {"run", "plan", "sweep", "eval", "notebooks"}


@pytest.mark.parametrize("argv, problem", [
    ([], "error: no command given"),
    (["rnu"], "error: unknown command 'rnu' (did you mean 'run'?)"),
    (["--gpu-gb", "16"], "error: unknown command '--gpu-gb'"),
])
def test_no_or_unknown_command_says_so_and_lists_the_commands(capsys, argv, problem):
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert out.startswith(problem), out
    for name, (_, line) in COMMANDS.items():
        assert name in out and line.split()[0] in out


@pytest.mark.parametrize("command, option", [
    ("run", "--check"), ("plan", "--gpu-gb"), ("sweep", "--dry-run"), ("eval", "--harness"), ("notebooks", "--force"),
])
def test_each_command_keeps_its_own_options(capsys, command, option):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: loralab {command}") and option in out


def test_a_usage_error_is_argparse_own_and_exits_2(capsys):
    assert main(["run"]) == 2
    assert "the following arguments are required: notebook" in capsys.readouterr().err


def test_help_and_plan_answer_without_torch():
    code = ("import sys; from loralab.cli import main; assert main(['--help']) == 0; "
            "assert main(['plan', 'llama-3.1-8b', '--gpu-gb', '16', '--json']) == 0; "
            "assert main(['plan', 'llama-3.1-8b', '--gpu-gb', '0']) == 2; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error: --gpu-gb: must be a finite positive number" in done.stdout


def test_check_reports_the_estimate_and_creates_nothing(tmp_path):
    """A good params file: exit 0, the checks and the memory line printed, no run folder, no kernel, no model code."""
    code = ("import sys; from loralab.cli import main; from loralab.runs import runner\n"
            "def no_kernel(*a, **k): raise AssertionError('the kernel was started')\n"
            "runner._execute = no_kernel\n"
            f"rc = main(['run', {NB01!r}, '-f', {SMOKE!r}, '-p', 'lora_r', '4', '--runs-root', 'runs', '--check'])\n"
            "loaded = [m for m in ('unsloth', 'transformers.modeling_utils', 'peft', 'trl') if m in sys.modules]\n"
            "print('loaded:', loaded); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    # the supervision check renders the chat template with transformers' Jinja renderer: no model code
    assert "loaded: []" in out, "--check imported model code (unsloth, transformers' models, peft or trl)"
    assert not (tmp_path / "runs").exists() and not list(tmp_path.iterdir()), "--check wrote something"
    assert out.startswith("checked 01_qlora_finetune.ipynb with ")
    for label in ("names", "values", "data", "answers", "memory", "run folder"):
        assert re.search(rf"^  {label} +\S", out, re.MULTILINE), f"no {label} line in:\n{out}"
    memory = re.search(r"^  memory +~(\d+\.\d) GiB peak per GPU: QLoRA \(4-bit base\) of "
                       r"embedded/smollm2-135m-instruct .*r=4 on all-linear", out, re.MULTILINE)
    assert memory and 0.8 < float(memory.group(1)) < 4, out
    assert "fits T4 16GB" in out and "none created" in out
    assert re.search(r"^  answers +the loss is computed on [\d,]+ answer tokens, \d+% of the [\d,]+ tokens of \d+ rows "
                     r"\(per row: min \d+%, median \d+%\); every answer ends with the end-of-turn token '<\|im_end\|>'",
                     out, re.MULTILINE), out
    assert out.rstrip().endswith("ok: the same command without --check runs it\nloaded: []")


def test_check_of_a_model_the_planner_cannot_size_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    from loralab.runs import runner

    monkeypatch.setattr(runner, "_execute", lambda *a, **k: pytest.fail("the kernel was started"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", NB01, "-f", SMOKE, "-p", "model_name", "someorg/custom-7b", "--check"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("  memory")]
    assert len(lines) == 1 and "no estimate" in lines[0] and "someorg/custom-7b" in lines[0], out
    assert "reads no config.json from the hub" in lines[0] and "loralab plan FOLDER" in lines[0]
    assert not list(tmp_path.iterdir())


def test_check_sizes_a_local_model_folder_from_its_config(tmp_path, capsys, monkeypatch):
    import json

    from loralab.runs import runner

    monkeypatch.setattr(runner, "_execute", lambda *a, **k: pytest.fail("the kernel was started"))
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True}))
    (folder / "model.safetensors").write_bytes(b"")
    assert main(["run", NB01, "-f", SMOKE, "-p", "model_name", str(folder), "--runs-root", str(tmp_path / "runs"),
                 "--check"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"memory +~\d+\.\d GiB peak per GPU: QLoRA \(4-bit base\) of .*my-model \(1\.2\dB weights\)", out), out
    assert not (tmp_path / "runs").exists()


def test_check_with_node_rank_is_refused(capsys):
    assert main(["run", NB01, "-f", SMOKE, "--nnodes", "2", "--master-port", "29533", "--node-rank", "1",
                 "--check"]) == 2
    assert capsys.readouterr().out.startswith("error: --check checks machine 0's run")
