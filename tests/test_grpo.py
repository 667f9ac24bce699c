"""Notebook 05's package parts without a model: the schema, rewards from scorers, the reward pre-flight, the prompts,
the contract and the shipped params files (tests/test_notebook_05.py runs the notebook)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loralab.data.chat_rows import DatasetError
from loralab.data.grpo_prompts import INSTRUCTION, load_prompt_rows, normalise_prompt_row, scored_rows
from loralab.eval.rewards import (
    ScorerReward,
    check_reward_output,
    preflight_rewards,
    reward_functions,
    rewards_of,
)
from loralab.eval.scorers import final_number
from loralab.params.contracts import CONTRACTS, contract_of
from loralab.params.errors import ParamsError
from loralab.params.grpo_config import EMBEDDED_GRPO_REWARDS, GrpoConfig, validate_grpo_params
from loralab.params.yaml_reader import read_params_file

REPO = Path(__file__).resolve().parents[1]
PARAMS_05 = sorted((REPO / "params" / "05_grpo").glob("*.yaml"))
ROW = {"prompt": [{"role": "user", "content": "What is the capital of Peru?"}], "reference": "Lima"}
FORMAT = "regex:^The answer is [^.!?]+[.!?]$"


def test_defaults_are_the_embedded_task_with_its_rewards():
    cfg = GrpoConfig()
    assert cfg.dataset == cfg.eval_dataset == "embedded/answer-format"
    assert cfg.rewards == EMBEDDED_GRPO_REWARDS["embedded/answer-format"] == [FORMAT, "contains"]
    assert cfg.reward_weight_list == [1.0, 1.0]
    assert cfg.eval_scorers == cfg.rewards, "held-out prompts are scored with the rewards"
    assert cfg.prompts_per_step * cfg.num_generations == cfg.per_device_train_batch_size


@pytest.mark.parametrize("params, expected", [
    ({"reward_weights": [1.0]}, "one weight per reward"),
    ({"per_device_train_batch_size": 6}, "multiple of num_generations"),
    ({"rewards": []}, "at least one reward"),
    ({"dataset": "my/prompts", "eval_dataset": ""}, "has no rewards of its own"),
    ({"num_generations": 1}, "num_generations"),
    ({"packing": "packed"}, "packing"),
    ({"eval_steps": 5}, "eval_steps: 0"),
    ({"retention_tasks": ["arc_easy"]}, "retention_tasks: []"),
    ({"use_dora": True}, "notebook 05 trains a plain LoRA adapter"),
    ({"loraplus_lr_ratio": 16}, "remove loraplus_lr_ratio"),
    ({"dataset": "maths.csv", "eval_dataset": "", "rewards": ["contains"], "prompt_template": "Solve: {question}",
      "answer_column": "answer"}, "use prompt_column and reference_column"),
    ({"eval_dataset": "embedded/json-answers"}, "another embedded set"),
    ({"beta": -1}, "beta"),
    ({"num_generatoins": 4}, "num_generations"),
])
def test_bad_params_are_refused_in_a_sentence(params, expected):
    with pytest.raises(ParamsError) as error:
        validate_grpo_params(params)
    assert expected in str(error.value)
    assert "\n" not in str(error.value).strip()


def test_rewards_are_scorers_named_by_their_spec():
    rewards = reward_functions([FORMAT, "contains", "final_number"])
    assert [r.__name__ for r in rewards] == [FORMAT, "contains", "final_number"]
    completions = [[{"role": "assistant", "content": "The answer is Lima."}],
                   [{"role": "assistant", "content": "Lima, I think. Or Cusco"}]]
    assert rewards[0](prompts=[ROW["prompt"]] * 2, completions=completions, reference=["Lima"] * 2) == [1.0, 0.0]
    assert rewards[1](prompts=[ROW["prompt"]] * 2, completions=completions, reference=["Lima"] * 2) == [1.0, 1.0]


def test_a_bad_reward_spec_is_refused_as_a_reward():
    with pytest.raises(ParamsError, match="^rewards: unknown scorer 'contain'.*'contains'"):
        reward_functions(["contain"])
    with pytest.raises(ParamsError, match="^rewards: .*does not compile"):
        reward_functions(["regex:(("])


def test_final_number_reads_gsm8k_answers():
    assert final_number("So she pays 1,234 dollars.", "48 + 1186 = 1234\n#### 1234") == 1.0
    assert final_number("It is 72.0", "#### 72") == 1.0
    assert final_number("It is 71", "#### 72") == 0.0
    assert final_number("no number", "#### 72") == 0.0


CHECKERS = '''
def raises(completions, **kwargs):
    raise KeyError("score")

def wrong_type(completions, **kwargs):
    return "1.0"

def wrong_count(completions, **kwargs):
    return [1.0, 0.0]

def text_items(completions, **kwargs):
    return ["high" for _ in completions]

def by_length(completions, reference, **kwargs):
    return [1.0 / (1 + len(c[0]["content"].split())) for c in completions]

def plain_checker(reply, reference):
    return 1.0 if reference in reply else 0.0
'''


@pytest.fixture
def checkers(tmp_path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(CHECKERS)
    return path


@pytest.mark.parametrize("name, expected", [
    ("raises", "raised KeyError ('score') on a real completion"),
    ("wrong_type", "returned str ('1.0')"),
    ("wrong_count", "returned 2 values for 1 completion(s)"),
    ("text_items", "returned 'high' (str)"),
])
def test_the_preflight_refuses_a_broken_reward_in_one_line_naming_it(checkers, name, expected):
    spec = f"python:{checkers}:{name}"
    rewards = reward_functions(["contains", spec])
    with pytest.raises(ParamsError) as error:
        preflight_rewards(rewards, ROW, "The answer is Lima.")
    message = str(error.value)
    assert message.startswith(f"reward {spec!r}") and expected in message, message
    assert "\n" not in message


def test_the_preflight_gives_each_reward_on_the_completion(checkers):
    rewards = reward_functions([FORMAT, "contains", f"python:{checkers}:by_length", f"python:{checkers}:plain_checker"])
    assert isinstance(rewards[3], ScorerReward), "a (reply, reference) checker is a scorer"
    got = preflight_rewards(rewards, ROW, "The answer is Lima.")
    assert got == {FORMAT: 1.0, "contains": 1.0, f"python:{checkers}:by_length": 0.2,
                   f"python:{checkers}:plain_checker": 1.0}


def test_held_out_rewards_score_a_failing_function_zero(checkers):
    rewards = reward_functions(["contains", f"python:{checkers}:raises"])
    values = rewards_of(rewards, [ROW, ROW], ["Lima.", "Cusco."])
    assert values == {"contains": [1.0, 0.0], f"python:{checkers}:raises": [0.0, 0.0]}


def test_check_reward_output_takes_numbers_and_none():
    assert check_reward_output("r", [1, 0.5, None], 3)[:2] == [1.0, 0.5]
    with pytest.raises(ParamsError, match="returned True"):
        check_reward_output("r", [True], 1)


def test_the_embedded_prompts_ask_for_the_format_and_keep_the_answer():
    train, held_out = load_prompt_rows("embedded/answer-format", "train"), load_prompt_rows("embedded/answer-format", "eval")
    assert (len(train), len(held_out)) == (263, 69)
    assert all(row["prompt"][-1]["content"].endswith(INSTRUCTION) for row in train)
    assert not {r["prompt"][0]["content"] for r in train} & {r["prompt"][0]["content"] for r in held_out}
    assert scored_rows(train[:1])[0]["messages"][-1] == {"role": "assistant", "content": train[0]["reference"]}


def test_own_prompt_rows_and_their_mistakes(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"question": "What is 2 plus 2?", "answer": "#### 4", "level": 1}) + "\n"
                    + json.dumps({"text": "no prompt here"}) + "\n")
    with pytest.raises(DatasetError, match=r"prompts.jsonl line 2: no prompt column"):
        load_prompt_rows(str(path))
    row = normalise_prompt_row({"question": "What is 2 plus 2?", "answer": "#### 4", "level": 1}, "row 1")
    assert row == {"prompt": [{"role": "user", "content": "What is 2 plus 2?"}], "reference": "#### 4", "level": 1,
                   "answer": "#### 4"}, "the other columns reach python: rewards as TRL passes them"
    with pytest.raises(DatasetError, match="no reference column 'solution'"):
        normalise_prompt_row({"prompt": "hi"}, "row 1", reference_column="solution")


def test_prompt_rows_from_a_csv_with_its_own_columns(tmp_path):
    path = tmp_path / "maths.csv"
    path.write_text("problem,solution\nWhat is 2 plus 2?,4\n")
    rows = load_prompt_rows(str(path), prompt_column="problem", reference_column="solution")
    assert rows[0]["prompt"] == [{"role": "user", "content": "What is 2 plus 2?"}] and rows[0]["reference"] == "4"
    path.write_text("problem,solution\nWhat is 2 plus 2?,4\n,7\n")
    with pytest.raises(DatasetError, match=r"maths.csv row 3 \(the header is row 1\)"):
        load_prompt_rows(str(path), prompt_column="problem", reference_column="solution")


def test_notebook_05_has_its_contract():
    contract = CONTRACTS["05_grpo"]
    assert contract.schema is GrpoConfig and contract.folder_param == "run_dir"
    assert contract.results_file == "metrics.json"
    assert contract_of(REPO / "notebooks" / "05_grpo.ipynb") is contract


def test_shipped_params_files_of_05():
    assert {p.name for p in PARAMS_05} >= {"smoke.yaml", "colab_t4.yaml", "a100_llama8b.yaml"}


@pytest.mark.parametrize("path", PARAMS_05, ids=lambda p: p.name)
def test_every_params_file_of_05_validates(path):
    cfg = validate_grpo_params(read_params_file(path), source=str(path))
    if path.name != "smoke.yaml":  # the GPU files: a real hub model and a math task with a numeric reward
        assert "/" in cfg.model_name and not cfg.model_name.startswith("embedded/")
        assert cfg.dataset == "openai/gsm8k" and "final_number" in cfg.rewards


def test_loralab_run_check_refuses_a_bad_reward_before_the_kernel(tmp_path, capsys):
    from loralab.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("rewards: [contians]\n")
    assert main(["run", "05", "-f", str(bad), "--check"]) == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("error: ") and "unknown scorer 'contians'" in out[0], out
    assert "'contains'" in out[0]


def test_loralab_run_05_finds_its_smoke_params_and_checks_them(capsys):
    from loralab.cli import main

    assert main(["run", "05", "-f", "smoke.yaml", "--check"]) == 0
    out = capsys.readouterr().out
    assert "params/05_grpo/smoke.yaml" in out and "checked 05_grpo.ipynb" in out
    assert "rewards ['regex:^The answer is [^.!?]+[.!?]$', 'contains'] parsed" in out
    # the memory line is the planner's GRPO estimate: prompts x completions, the prompt's share of max_seq_length
    assert "2 prompts x 4 completions of (240 + 16) tokens, plain generation" in out
    assert "--objective grpo --generations 4 --completion-length 16" in out


def test_a_resumed_run_drops_the_completions_an_interrupted_run_wrote_past_its_checkpoint(tmp_path):
    from loralab.train.grpo_trainer import _drop_completions_from

    path = tmp_path / "completions.jsonl"
    path.write_text("".join(json.dumps({"step": s, "completion": "x"}) + "\n" for s in (1, 1, 2, 3))
                    + '{"step": 1, "compl')  # a killed run's half-written last line
    _drop_completions_from(path, 2)  # the resumed run's first write is at step 2
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 1]
    _drop_completions_from(tmp_path / "none.jsonl", 2)  # a first run has no file yet
    assert not (tmp_path / "none.jsonl").exists()
