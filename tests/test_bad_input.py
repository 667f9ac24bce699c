"""A bad-input battery: what a user with a long day types, and what loralab says back.

Every case runs the real command line in-process (``loralab.cli.main``) and checks that it exits
with 2, prints one short message that names the problem, shows no traceback, never starts a kernel
(so no model loads), and leaves every file it was given, and the runs folder, as they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loralab.cli import main

REPO = Path(__file__).resolve().parents[1]
NB01 = str(REPO / "notebooks" / "01_qlora_finetune.ipynb")
SMOKE = str(REPO / "params" / "01_qlora_finetune" / "smoke.yaml")
GOOD_ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
OWN = ["-p", "eval_dataset", "", "-p", "eval_scorers", "[]"]  # own data, no held-out split


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def refused(tmp_path, capsys, monkeypatch):
    """Run ``loralab ARGS``; assert it was refused cleanly, before any kernel, and return the message."""
    from loralab.runs import runner

    def no_kernel(*args, **kwargs):
        raise AssertionError("the kernel was started: the input was not checked first")

    monkeypatch.setattr(runner, "_execute", no_kernel)
    monkeypatch.chdir(tmp_path)

    def check(args: list[str], *expected: str) -> str:
        before = snapshot(tmp_path)
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        out = captured.out + captured.err
        assert code == 2, f"exit {code} for {args}: {out}"
        assert "Traceback" not in out, out
        assert out.startswith("error: ") and len(out.strip().splitlines()) <= 2, out
        for text in expected:
            assert text in out, f"{text!r} not in: {out}"
        assert snapshot(tmp_path) == before, "files changed on disk"
        assert not (tmp_path / "runs").exists(), "a run folder was created for refused input"
        return out

    return check


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def run01(*extra) -> list[str]:
    return ["run", NB01, "--runs-root", "runs", *extra]


# --- params files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("lora_r: [\n", ("is not valid YAML (line 2", "name: value")),
    ("- lora_r\n- 8\n", ("expected a mapping of name: value",)),
    ("", ("is empty", "sets no parameter")),
    ("# lora_r: 8\n", ("is empty",)),
    ("lora_r: 8\nlora_alpha: 16\nlora_r: 4\n", ("'lora_r' is set twice (lines 1 and 3)",)),
    ("lora_rank: 8\n", ("p.yaml: unknown parameter 'lora_rank'", "Did you mean 'lora_r'")),
    ("load_in_4bit: yes\n", ("load_in_4bit: write true or false",)),
    ("lora_dropout: 1.5\n", ("lora_dropout", "less than 1")),
    ("lora_r: 0\n", ("lora_r", "greater than or equal to 1")),
    ("learning_rate: fast\n", ("learning_rate", "valid number")),
    ("seed: 1180591620717411303424\n", ("seed", "4294967295")),
    ("seed: -1\n", ("seed", "greater than or equal to 0")),
    ("target_modules: all\u2011linear\n", ("U+2011 NON-BREAKING HYPHEN at position 4",)),
    ("lora_r\u200b: 8\n", ("U+200B ZERO WIDTH SPACE", "Did you mean 'lora_r'")),
    ("hf_token: hf_abcdefghijklmnopqrstuvwxyz012345\n", ("looks like a secret", "HF_TOKEN")),
    ("optim: adamw_8bit\n", ("'adamw_8bit' is a GPU optimizer", "adamw_torch")),
    ("model_name: llama\n", ("'llama' is not a model name",)),
    ("max_steps: 0\n", ("max_steps",)),
    ("eval_fraction: 1.0\n", ("eval_fraction", "less than 1")),
    ("eval_fraction: 0.1\n", ("both choose the held-out rows",)),
    ("eval_dataset: ''\neval_steps: 5\n", ("need held-out rows",)),
    ("early_stopping_patience: 2\n", ("set eval_steps",)),
    ("eval_scorers: [rougel]\n", ("unknown scorer 'rougel'", "Did you mean 'rouge_l'")),
    ("eval_scorers: ['regex:(']\n", ("'regex:(': the pattern does not compile",)),
    ("eval_scorers: ['python:no_such_checker_module:check']\n", ("cannot import 'no_such_checker_module'",)),
    ("eval_scorers: ['regex:^ANSWER']\n", ("gives the reference answer", "score of 0")),
    ("eval_scorers: [json_shape, json_shape]\n", ("given twice",)),
    ("dataset: my.jsonl\n", ("eval_dataset is the embedded 'embedded/json-answers'",)),
])
def test_bad_params_files(refused, tmp_path, text, expected):
    write(tmp_path, "p.yaml", text)
    refused(run01("-f", "p.yaml"), *expected)


def test_a_params_file_that_is_not_utf8(refused, tmp_path):
    write(tmp_path, "p.yaml", "lora_r: 8\nrun_name: caf\xe9\n".encode("latin-1"))
    refused(run01("-f", "p.yaml"), "is not UTF-8")


def test_a_missing_params_file(refused):
    refused(run01("-f", "nope.yaml"), "params file nope.yaml does not exist")


def test_a_notebook_given_as_a_params_file(refused):
    refused(run01("-f", NB01), "is a notebook, not a params file")


def test_a_typo_in_p_is_blamed_on_p_not_on_the_file(refused):
    out = refused(run01("-f", SMOKE, "-p", "lora_rnak", "3"), "-p lora_rnak: unknown parameter 'lora_rnak'")
    assert "smoke.yaml" not in out


@pytest.mark.parametrize("notebook, old, new", [("03", "train_steps", "max_steps"),
                                              ("03", "base_model", "model_name"),
                                              ("03", "batch_size", "per_device_train_batch_size"),
                                              ("00", "rank", "lora_r"), ("00", "seq", "max_seq_length"),
                                              ("00", "batch", "per_device_train_batch_size"),
                                              ("01", "targets", "target_modules")])
def test_an_old_parameter_name_is_refused_naming_the_new_one(refused, notebook, old, new):
    out = refused(["run", notebook, "--runs-root", "runs", "-p", old, "3"])
    assert out.strip() == f"error: -p {old}: {old!r} is now {new!r}.", out


def test_an_old_name_in_a_params_file_is_refused_naming_the_new_one(refused, tmp_path):
    write(tmp_path, "p.yaml", "output_dir: somewhere\n")
    out = refused(["run", "03", "--runs-root", "runs", "-f", "p.yaml"])
    assert out.strip() == "error: p.yaml: 'output_dir' is now 'run_dir'.", out


def test_a_p_value_that_is_not_yaml(refused):
    refused(run01("-p", "target_modules", "[q_proj"), "-p target_modules", "is not a YAML value")


def test_run_dir_is_refused_with_what_to_use_instead(refused):
    refused(run01("-p", "run_dir", "/tmp/somewhere"), "run_dir is chosen by loralab run", "--runs-root")


def test_a_relative_path_means_from_where_the_command_ran(refused, tmp_path):
    out = refused(run01("-p", "dataset", "data/missing.jsonl", *OWN), str(tmp_path / "data" / "missing.jsonl"))
    assert "notebooks" not in out


# --- the notebook and the runs folder ---------------------------------------------------------------

def test_a_missing_notebook(refused):
    refused(["run", "notebooks/nope.ipynb"], "notebooks/nope.ipynb does not exist")


def test_a_params_file_where_the_notebook_belongs(refused):
    refused(["run", SMOKE], "the first argument must be a notebook (.ipynb)", "pass it with -f")


def test_runs_root_is_a_file(refused, tmp_path):
    write(tmp_path, "runs-file", "x")
    refused(["run", NB01, "-f", SMOKE, "--runs-root", "runs-file"], "--runs-root runs-file is a file")


def test_runs_root_below_a_file(refused, tmp_path):
    write(tmp_path, "blocker", "x")
    refused(["run", NB01, "-f", SMOKE, "--runs-root", "blocker/runs"], "blocker is a file")


# --- datasets: every row is checked before the kernel starts --------------------------------------------

@pytest.mark.parametrize("content, expected", [
    ("", ("has no rows",)),
    ("\n\n", ("has no rows",)),
    (json.dumps(GOOD_ROW) + "\nnot json\n", ("d.jsonl, line 2: not JSON",)),
    ("[\n" + json.dumps(GOOD_ROW) + "\n]\n", ("line 1", "JSON array")),
    (json.dumps([GOOD_ROW, GOOD_ROW]) + "\n",
     ("d.jsonl line 1", "one JSON object per line", "a JSON array of 2 items", "each item on a line of its own")),
    (json.dumps(GOOD_ROW) + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n",
     ("d.jsonl line 3", "no assistant turn")),
    (json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}]}) + "\n",
     ("line 1", "answer is empty")),
    (json.dumps({"messages": [{"role": "bot", "content": "Hi"}]}) + "\n", ("line 1", "role must be one of")),
    (json.dumps({"messages": [{"role": "user", "content": [{"type": "image"}]},
                              {"role": "assistant", "content": "x"}]}) + "\n", ("line 1", "image")),
    (json.dumps({"prompt": "Hi", "reply": "Hello"}) + "\n", ("line 1",)),
    (json.dumps({"messages": "Hi"}) + "\n", ("line 1",)),
    (json.dumps("just text") + "\n", ("line 1", "one JSON object per line", "a JSON string")),
])
def test_bad_dataset_files(refused, tmp_path, content, expected):
    write(tmp_path, "d.jsonl", content)
    refused(run01("-p", "dataset", "d.jsonl", *OWN), *expected)


def test_a_dataset_that_is_not_utf8(refused, tmp_path):
    write(tmp_path, "d.jsonl", b'{"instruction": "caf\xe9", "output": "x"}\n')
    refused(run01("-p", "dataset", "d.jsonl", *OWN), "is not UTF-8")


def test_a_missing_dataset(refused):
    refused(run01("-p", "dataset", "nope.jsonl", *OWN), "nope.jsonl does not exist")


@pytest.mark.parametrize("name, content, expected", [
    ("d.csv", "a,b\n1,2\n", ("d.csv has the columns a, b", "set prompt_template", "and answer_column")),
    ("d.json", "a,b\n1,2\n", ("d.json could not be read as JSON",)),
    ("d.parquet", "a,b\n1,2\n", ("d.parquet could not be read as PARQUET",)),
    ("d.xlsx", "PK", ("Excel workbook", "save it as CSV")),
])
def test_a_dataset_file_that_cannot_be_used_as_it_is(refused, tmp_path, name, content, expected):
    write(tmp_path, name, content)
    refused(run01("-p", "dataset", name, *OWN), *expected)


def test_an_unknown_embedded_dataset(refused):
    refused(run01("-p", "dataset", "embedded/jsonanswers", *OWN), "is not an embedded dataset")


def test_a_held_out_file_that_repeats_the_training_rows(refused, tmp_path):
    write(tmp_path, "d.jsonl", json.dumps(GOOD_ROW) + "\n")
    refused(run01("-p", "dataset", "d.jsonl", "-p", "eval_dataset", "d.jsonl", "-p", "eval_scorers", "[]"),
            "has no usable rows")


def test_a_missing_held_out_file(refused, tmp_path):
    write(tmp_path, "d.jsonl", json.dumps(GOOD_ROW) + "\n")
    refused(run01("-p", "dataset", "d.jsonl", "-p", "eval_dataset", "e.jsonl", "-p", "eval_scorers", "[]"),
            "e.jsonl does not exist")


def test_a_bad_row_in_the_held_out_file(refused, tmp_path):
    write(tmp_path, "d.jsonl", json.dumps(GOOD_ROW) + "\n")
    write(tmp_path, "e.jsonl", json.dumps(GOOD_ROW | {"messages": [{"role": "user", "content": "x"}]}) + "\n")
    refused(run01("-p", "dataset", "d.jsonl", "-p", "eval_dataset", "e.jsonl", "-p", "eval_scorers", "[]"),
            "e.jsonl line 1", "no assistant turn")


def test_eval_fraction_that_leaves_no_training_rows(refused, tmp_path):
    write(tmp_path, "d.jsonl", json.dumps(GOOD_ROW) + "\n")
    refused(run01("-p", "dataset", "d.jsonl", "-p", "eval_dataset", "", "-p", "eval_fraction", "0.5",
                  "-p", "eval_scorers", "[]"), "leaves no training rows")


# --- model names ---------------------------------------------------------------------------------------

def test_a_model_folder_without_config(refused, tmp_path):
    (tmp_path / "mymodel").mkdir()
    refused(run01("-p", "model_name", "./mymodel"), "is not a model folder (no config.json there)")


def test_a_model_folder_without_weights(refused, tmp_path):
    """config.json alone: transformers would fail inside the kernel ("no file named model.safetensors")."""
    write(tmp_path, "mymodel/config.json", json.dumps({"model_type": "llama"}))
    write(tmp_path, "mymodel/tokenizer.json", "{}")
    refused(run01("-p", "model_name", "./mymodel"), "holds config.json but no weights", "*.safetensors",
            "model.safetensors.index.json", "save_pretrained")


def test_a_model_folder_with_sharded_weights_passes_the_weights_check(tmp_path):
    from loralab.params.run_config import has_weights

    write(tmp_path, "m/config.json", "{}")
    assert not has_weights(tmp_path / "m")
    write(tmp_path, "m/model.safetensors.index.json", "{}")
    assert has_weights(tmp_path / "m")


def test_an_unknown_embedded_model(refused):
    refused(run01("-p", "model_name", "embedded/smollm3"), "is not an embedded model")


# --- notebooks without a parameters cell ---------------------------------------------------------------

def plain_notebook(folder: Path) -> Path:
    """A notebook whose cells have no 'parameters' tag: papermill can set nothing in it."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("lora_r = 16\nprint(lora_r)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "plain.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_parameter_for_a_notebook_without_a_parameters_cell(refused, tmp_path):
    plain_notebook(tmp_path)
    out = refused(["run", "plain.ipynb", "--runs-root", "runs", "-p", "lora_r", "8"],
                  "-p lora_r: plain.ipynb takes no parameters", "tagged 'parameters'", "without -f and -p")
    assert "Valid names" not in out
    write(tmp_path, "p.yaml", "lora_r: 8\n")
    refused(["run", "plain.ipynb", "--runs-root", "runs", "-f", "p.yaml"], "p.yaml: plain.ipynb takes no parameters")


def test_run_notebook_says_the_same_for_a_notebook_without_a_parameters_cell(tmp_path):
    from loralab.params.errors import ParamsError
    from loralab.runs.runner import run_notebook

    with pytest.raises(ParamsError, match="plain.ipynb takes no parameters"):
        run_notebook(plain_notebook(tmp_path), {"lora_r": 8}, runs_root=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


# --- loralab run --check: the same checks, then a report; a refusal is the usual one line ----------------

def test_check_refuses_a_bad_value_in_one_line(refused, tmp_path):
    write(tmp_path, "p.yaml", "lora_r: 0\n")
    refused(run01("-f", "p.yaml", "--check"), "p.yaml: lora_r", "greater than or equal to 1")


def test_check_refuses_a_bad_data_file(refused, tmp_path):
    write(tmp_path, "d.jsonl", json.dumps([GOOD_ROW]) + "\n")
    refused(run01("-p", "dataset", "d.jsonl", *OWN, "--check"), "a JSON array of 1 item:")


# --- sweeps --------------------------------------------------------------------------------------------

def sweep_spec(tmp_path: Path, **spec) -> str:
    import yaml

    body = {"question": "Does it work?", "notebook": NB01, "base": SMOKE, **spec}
    return str(write(tmp_path, "s.yaml", yaml.safe_dump(body, sort_keys=False)))


def test_sweep_missing_spec(refused):
    refused(["sweep", "nope.yaml", "--sweeps-root", "sweeps"], "nope.yaml")


def test_sweep_with_a_typo_in_a_grid_knob(refused, tmp_path):
    refused(["sweep", sweep_spec(tmp_path, grid={"lora_rnak": [4, 8]}), "--sweeps-root", "sweeps"], "lora_rnak")
    assert not (tmp_path / "sweeps").exists()


def test_sweep_with_a_bad_value_in_one_run(refused, tmp_path):
    runs = [{"lora_r": 4}, {"lora_r": 8}, {"lora_dropout": 2.0}]
    refused(["sweep", sweep_spec(tmp_path, runs=runs), "--sweeps-root", "sweeps"], "lora_dropout")
    assert not (tmp_path / "sweeps").exists(), "no run starts when one of them is invalid"


def test_sweep_that_sets_the_run_folder(refused, tmp_path):
    refused(["sweep", sweep_spec(tmp_path, grid={"run_dir": ["a", "b"]}), "--sweeps-root", "sweeps"], "run_dir")


def test_sweep_with_an_unknown_key(refused, tmp_path):
    refused(["sweep", sweep_spec(tmp_path, gird={"lora_r": [4]}), "--sweeps-root", "sweeps"], "gird")


# --- loralab eval --------------------------------------------------------------------------------------

def test_eval_of_a_missing_folder(refused):
    refused(["eval", "runs-elsewhere/adapter"], "no such folder")


def test_eval_with_nothing_to_evaluate(refused):
    refused(["eval"], "name adapter folders to evaluate, or --base")


def test_eval_of_a_folder_without_manifest_or_params(refused, tmp_path):
    write(tmp_path, "someadapter/adapter_config.json", "{}")
    refused(["eval", "someadapter"], "has no loralab_manifest.json", "-f")


def test_eval_with_a_bad_scorer(refused):
    refused(["eval", "--base", "-f", SMOKE, "-p", "eval_scorers", "[containz]"], "Did you mean 'contains'")


# --- retention checks (lm-evaluation-harness) ------------------------------------------------------------

@pytest.fixture
def no_hub(monkeypatch):
    """This machine with the Hugging Face Hub's own offline switch on (what HF_HUB_OFFLINE=1 sets)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("value, expected", [
    ("[hellaswg]", ("'hellaswg' is not an lm-evaluation-harness task", "did you mean hellaswag")),
    ("[loralab_general_knowledge, arc_eazy]", ("did you mean arc_easy",)),
    ("[arc_easy]", ("allenai/ai2_arc from the Hugging Face Hub", "use the local task loralab_general_knowledge")),
    ("mmlu", ("cais/mmlu from the Hugging Face Hub",)),
])
def test_bad_retention_tasks(refused, no_hub, value, expected):
    refused(run01("-p", "retention_tasks", value), *expected)


def test_a_retention_limit_below_one(refused):
    refused(run01("-p", "retention_tasks", "[loralab_general_knowledge]", "-p", "retention_limit", "0"),
            "retention_limit", "greater than or equal to 1")


def test_retention_tasks_in_notebook_04_are_checked_too(refused, no_hub):
    refused(run04("-p", "retention_tasks", "[arc_easy]"), "allenai/ai2_arc from the Hugging Face Hub")


def test_eval_harness_bad_input(refused, no_hub):
    refused(["eval", "--base", "-f", SMOKE, "--harness", "arc_eazy"], "did you mean arc_easy")
    refused(["eval", "--base", "-f", SMOKE, "--harness", "hellaswag", "--harness-only"], "Rowan/hellaswag")
    refused(["eval", "--base", "-f", SMOKE, "--harness", "loralab_general_knowledge", "--harness-limit", "0"],
            "--harness-limit 0")
    refused(["eval", "--base", "-f", SMOKE, "--harness"], "has none: name tasks")
    refused(["eval", "--base", "-f", SMOKE, "--harness-only"], "--harness-only needs --harness")


# --- experiment tracking -------------------------------------------------------------------------------

def test_a_tracker_typo(refused):
    refused(run01("-p", "report_to", "tensorbord"), "report_to", "'tensorboard'")


def test_a_tracker_that_is_not_installed(refused):
    import importlib.util

    missing = next((t for t in ("wandb", "trackio") if importlib.util.find_spec(t) is None), None)
    if missing is None:
        return  # both installed on this machine: nothing to refuse
    refused(run01("-p", "report_to", missing), f"pip install {missing}", "report_to: none")


# --- several processes and machines ---------------------------------------------------------------------

def test_more_processes_than_cores(refused):
    import os

    cores = len(os.sched_getaffinity(0))
    refused(run01("--nproc-per-node", str(cores + 1)), f"this machine has {cores} CPU cores",
            f"num_processes: {cores}")


def test_a_port_in_use(refused):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused(run01("--nproc-per-node", "2", "--master-port", str(port)), f"master_port: {port} is already in use")


def test_a_node_rank_outside_the_machines(refused):
    refused(run01("--nnodes", "2", "--master-port", "29533", "--node-rank", "2"), "--node-rank 2",
            "node 1 to 1")


def test_several_machines_need_a_port(refused):
    refused(run01("--nnodes", "2"), "set master_port")


def test_fsdp_on_a_cpu_machine_is_refused_with_the_reason(refused):
    refused(run01("--nproc-per-node", "2", "--strategy", "fsdp"), "parallel_strategy: fsdp",
            "accelerate runs FSDP only on GPUs", "parallel_strategy: ddp")


def test_fsdp_in_one_process_is_refused(refused):
    refused(run01("--strategy", "fsdp"), "num_processes and num_nodes are 1")


def test_notebook_04_trains_in_one_process(refused):
    refused(run04("--nproc-per-node", "2"), "notebook 04 trains in one process")


# --- the error boundary itself ---------------------------------------------------------------------------

def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        main(["run", "nope.ipynb", "--debug"])
    assert "LORALAB_DEBUG" not in os.environ, "--debug is for that one command"


def test_file_system_errors_name_the_path():
    from loralab.cli import user_message

    assert user_message(FileNotFoundError(2, "No such file", "/x/y")) == "/x/y does not exist."
    assert "not readable or writable" in user_message(PermissionError(13, "denied", "/root/z"))
    assert "disk is full" in user_message(OSError(28, "No space left on device"))


def test_an_error_inside_the_kernel_comes_back_as_one_line(tmp_path, capsys, monkeypatch):
    """The kernel's own error (here: the notebook's validation of a value only the kernel sees)."""
    from loralab.params.errors import RunFailed
    from loralab.runs import runner

    def failing(notebook, run_dir, parameters, folder_param, timeout_s):
        (run_dir / notebook.name).write_text("{}")
        raise RunFailed("DatasetError", "org/data[train] row 4: the conversation has no assistant turn", 6,
                        str(run_dir / notebook.name))

    monkeypatch.setattr(runner, "_execute", failing)
    monkeypatch.chdir(tmp_path)
    assert main(["run", NB01, "-f", SMOKE, "--runs-root", "runs"]) == 2
    out = capsys.readouterr().out
    assert out.startswith("error: DatasetError: org/data[train] row 4") and "(cell 6)" in out
    assert "01_qlora_finetune.ipynb" in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_the_battery_is_big_enough():
    import inspect
    import sys

    module = sys.modules[__name__]
    cases = 0
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if name.startswith("test_") and name != "test_the_battery_is_big_enough":
            marks = [m for m in getattr(fn, "pytestmark", []) if m.name == "parametrize"]
            cases += len(marks[0].args[1]) if marks else 1
    assert cases >= 60, cases
    assert os.environ.get("UNSLOTH_CPU_BF16") == "0"


# --- notebook 04: preference tuning --------------------------------------------------------------------

NB04 = str(REPO / "notebooks" / "04_preference_tuning.ipynb")
PAIR = {"prompt": "What is 2 plus 2?", "chosen": "The answer is 4.", "rejected": "Well, it might be 4, I think."}
OWN_PAIRS = ["-p", "eval_dataset", "", "-p", "eval_scorers", "[]"]


def run04(*extra) -> list[str]:
    return ["run", NB04, "--runs-root", "runs", *extra]


@pytest.mark.parametrize("row, expected", [
    ({"prompt": "Hi", "completion": "Hello", "label": True}, ("these are KTO rows", "method: kto")),
    ([PAIR, PAIR], ("pairs.jsonl line 1", "one JSON object per line", "a JSON array of 2 items")),
    (PAIR | {"rejected": " The answer is  4. "}, ("line 1", "nothing to prefer")),
    (PAIR | {"chosen": ""}, ("line 1",)),
    ({"chosen": "The answer is 4.", "rejected": "Maybe 4."}, ("line 1",)),
])
def test_bad_preference_rows(refused, tmp_path, row, expected):
    write(tmp_path, "pairs.jsonl", json.dumps(row) + "\n")
    refused(run04("-p", "dataset", "pairs.jsonl", *OWN_PAIRS), *expected)


@pytest.mark.parametrize("extra, expected", [
    (("-p", "method", "dpoo"), ("method: Input should be 'dpo', 'orpo' or 'kto'",)),
    (("-p", "beta", "0"), ("beta: Input should be greater than 0",)),
    (("-p", "beta", "-0.1"), ("beta",)),
    (("-p", "loss_type", "sigmod"), ("is not one of TRL's DPO losses",)),
    (("-p", "method", "orpo", "-p", "loss_type", "ipo"), ("loss_type is DPO's",)),
    (("-p", "sft_adapter", "nowhere/adapter"), ("sft_adapter",)),
    (("-p", "eval_fraction", "0.1"), ("eval_fraction (0.1) both choose the held-out rows",)),  # 04 holds out with eval_dataset
    (("-p", "full_finetuning", "true"), ("notebook 04 trains a LoRA adapter",)),  # 04 trains LoRA only
])
def test_bad_preference_params(refused, extra, expected):
    refused(run04(*extra), *expected)


def test_an_sft_adapter_trained_on_another_base_is_refused(refused, tmp_path):
    import torch
    from safetensors.torch import save_file

    adapter = tmp_path / "other-sft" / "adapter"
    adapter.mkdir(parents=True)
    save_file({"base_model.model.x.lora_A.weight": torch.zeros(2, 2)}, str(adapter / "adapter_model.safetensors"))
    write(adapter, "adapter_config.json", json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                                                      "base_model_name_or_path": "embedded/smollm2-135m-instruct"}))
    write(adapter, "loralab_manifest.json", json.dumps({
        "manifest_version": 1, "base_quantization": "16-bit",
        "base": {"name": "embedded/smollm2-135m-instruct", "weights_sha256": "ab" * 32, "weight_files": {}},
        "adapter_files": {}}))
    refused(run04("-p", "sft_adapter", "other-sft/adapter"), "not the base the adapter was trained on")
