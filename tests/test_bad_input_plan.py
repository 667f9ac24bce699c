"""`loralab plan` refuses bad input with one `error:` line naming the option or file, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loralab.cli import main as cli_main
from loralab.plan.planner import plan

GOOD = ["meta-llama/Llama-3.1-8B", "--gpu-gb", "16"]
CONFIG = {  # the fields loralab plan needs, as save_pretrained writes them for a tiny Llama
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1000,
}


def _folder(tmp_path: Path, content: str | None) -> str:
    """A model folder under tmp_path whose config.json holds ``content`` (no config.json when None)."""
    folder = tmp_path / "model"
    folder.mkdir()
    if content is not None:
        (folder / "config.json").write_text(content)
    return str(folder)


def _without(key: str) -> str:
    return json.dumps({k: v for k, v in CONFIG.items() if k != key})


OPTION_CASES = {  # argv -> words the one error line must contain
    "gpu-gb nan": (["llama-3.1-8b", "--gpu-gb", "nan"], ["--gpu-gb", "finite positive", "--gpu-gb 16"]),
    "gpu-gb inf": (["llama-3.1-8b", "--gpu-gb", "inf"], ["--gpu-gb", "finite positive", "--gpu-gb 16"]),
    "gpu-gb -5": (["llama-3.1-8b", "--gpu-gb", "-5"], ["--gpu-gb", "finite positive", "--gpu-gb 16"]),
    "gpu-gb 0": (["llama-3.1-8b", "--gpu-gb", "0"], ["--gpu-gb", "finite positive", "--gpu-gb 16"]),
    "gpu-gb abc": (["llama-3.1-8b", "--gpu-gb", "abc"], ["--gpu-gb", "'abc'", "--gpu-gb 16"]),
    "gpu-gb missing": (["llama-3.1-8b"], ["--gpu-gb", "required"]),
    "lora-r 0": ([*GOOD, "--lora-r", "0"], ["--lora-r", ">= 1", "--lora-r 16"]),
    "r 1.5": ([*GOOD, "-r", "1.5"], ["--lora-r/-r", "whole number"]),
    "lora-alpha 0": ([*GOOD, "--lora-alpha", "0"], ["--lora-alpha", "finite positive"]),
    "a nan": ([*GOOD, "-a", "nan"], ["--lora-alpha/-a", "finite positive"]),
    "max-seq-length 0": ([*GOOD, "--max-seq-length", "0"], ["--max-seq-length", ">= 1", "--max-seq-length 2048"]),
    "s inf": ([*GOOD, "-s", "inf"], ["--max-seq-length/-s", "whole number"]),
    "per-device-train-batch-size -1": ([*GOOD, "--per-device-train-batch-size", "-1"],
                                       ["--per-device-train-batch-size", ">= 1", "--per-device-train-batch-size 2"]),
    "target-modules mlp": ([*GOOD, "--target-modules", "mlp"], ["--target-modules", "all-linear"]),
    "t mlp": ([*GOOD, "-t", "mlp"], ["--target-modules/-t", "all-linear"]),
    "gpus 0": ([*GOOD, "--gpus", "0"], ["--gpus", ">= 1", "--gpus 2"]),
    "gpus two": ([*GOOD, "--gpus", "two"], ["--gpus", "whole number", "'two'"]),
    "gpus 1.5": ([*GOOD, "--gpus", "1.5"], ["--gpus", "whole number"]),
    "strategy zero3": ([*GOOD, "--strategy", "zero3"], ["--strategy", "'zero3'", "ddp", "fsdp"]),
    "unknown name": (
        ["lama-3.1-8b", "--gpu-gb", "16"],
        ["Unknown model", "lama-3.1-8b", "Closest known names"],
    ),
}

FOLDER_CASES = {  # config.json content (None: no file) -> words besides the path the error line must contain
    "not JSON": ("{not json", ["is not JSON", "line 1 column 2", "save_pretrained"]),
    "JSON list": ("[1, 2]", ["JSON list", "not an object", "save_pretrained"]),
    "JSON string": ('"x"', ["JSON str", "not an object", "save_pretrained"]),
    "missing hidden_size": (_without("hidden_size"), ["'hidden_size'", "save_pretrained"]),
    "hidden_size not a number": (
        json.dumps({**CONFIG, "hidden_size": "big"}),
        ["hidden_size", "whole number", "save_pretrained"],
    ),
    "text_config not an object": (json.dumps({"text_config": [1]}), ["text_config", "not an object"]),
    "no config.json": (None, ["has no config.json", "save_pretrained"]),
}


def main(argv: list[str]) -> int:
    """``loralab plan ARGV`` through the command line's one error boundary (loralab.cli)."""
    return cli_main(["plan", *argv])


def _refused(argv: list[str], capsys) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = (out + err).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out + err
    return lines[0]


@pytest.mark.parametrize("argv, words", OPTION_CASES.values(), ids=OPTION_CASES.keys())
def test_bad_option_is_one_line_naming_it(argv, words, capsys):
    line = _refused(argv, capsys)
    for word in words:
        assert word in line, line


@pytest.mark.parametrize("old, new", [("--batch", "--per-device-train-batch-size (short: -b)"),
                                      ("--seq", "--max-seq-length (short: -s)"), ("--r", "--lora-r (short: -r)"),
                                      ("--alpha", "--lora-alpha (short: -a)"),
                                      ("--targets", "--target-modules (short: -t)")])
def test_an_old_option_is_refused_naming_the_new_one(old, new, capsys):
    """The long options are notebook 01's parameter names with dashes; an older name says what it is now."""
    assert _refused([*GOOD, old, "2"], capsys) == f"error: {old} is now {new}"
    assert _refused([*GOOD, f"{old}=2"], capsys) == f"error: {old} is now {new}"


def test_the_short_aliases_give_what_the_long_options_give(capsys):
    assert main([*GOOD, "-b", "4", "-s", "1024", "-r", "8", "-a", "32", "-t", "attention", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert main([*GOOD, "--per-device-train-batch-size", "4", "--max-seq-length", "1024", "--lora-r", "8",
                 "--lora-alpha", "32", "--target-modules", "attention", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == short
    assert (short["batch"], short["seq"], short["r"], short["alpha"], short["targets"]) == (4, 1024, 8, 32, "attention")


@pytest.mark.parametrize("content, words", FOLDER_CASES.values(), ids=FOLDER_CASES.keys())
def test_bad_model_folder_names_the_file(content, words, tmp_path, capsys):
    folder = _folder(tmp_path, content)
    line = _refused([folder, "--gpu-gb", "16"], capsys)
    assert (folder if content is None else str(Path(folder) / "config.json")) in line, line
    for word in words:
        assert word in line, line


def test_good_folder_and_good_name_still_plan(tmp_path, capsys):
    assert main(GOOD) == 0
    assert "Decision" in capsys.readouterr().out
    folder = _folder(tmp_path, json.dumps(CONFIG))
    assert main([folder, "--gpu-gb", "16", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "model" and data["gpu_gb"] == 16


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"gpu_gb": float("nan")}, "gpu_gb"),
        ({"gpu_gb": float("inf")}, "gpu_gb"),
        ({"gpu_gb": 16, "r": 0}, "r must"),
        ({"gpu_gb": 16, "seq": 1.5}, "seq must"),
        ({"gpu_gb": 16, "batch": True}, "batch must"),
        ({"gpu_gb": 16, "alpha": float("nan")}, "alpha must"),
        ({"gpu_gb": 16, "gpus": 0}, "gpus must"),
        ({"gpu_gb": 16, "strategy": "zero3"}, "strategy must"),
    ],
)
def test_library_plan_names_the_bad_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        plan("llama-3.1-8b", **kwargs)
