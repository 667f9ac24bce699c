"""The held-out split: deterministic, never leaking, and refused with a clear message when it cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loralab.data.chat_rows import DatasetError
from loralab.data.heldout import carve_fraction, load_splits, row_key
from loralab.eval.prepare import prepare_run_data
from loralab.params.errors import ParamsError
from loralab.params.run_config import validate_params


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def files(tmp_path):
    train = [chat(f"What is {i} plus 1?", f"Answer: {i + 1}") for i in range(40)]
    held_out = [chat(f"What is {i} plus 2?", f"Answer: {i + 2}") for i in range(10)]
    return tmp_path, write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "eval.jsonl", held_out)


def params(train: str, **extra) -> dict:
    return {"dataset": train, "eval_dataset": "", "eval_scorers": ["contains"], **extra}


def test_a_held_out_row_duplicated_into_the_training_file_is_detected_and_removed(files):
    tmp, train_file, eval_file = files
    eval_rows = [json.loads(line) for line in Path(eval_file).read_text().splitlines()]
    train_rows = [json.loads(line) for line in Path(train_file).read_text().splitlines()]
    leaked = eval_rows[3]
    # the same conversation, written with other whitespace: still the same row by content
    copy = {"messages": [{"role": m["role"], "content": "  " + m["content"].replace(" ", "  ") + "\n"}
                         for m in leaked["messages"]]}
    write_jsonl(tmp / "train.jsonl", train_rows[:20] + [copy] + train_rows[20:])
    cfg = validate_params(params(train_file, eval_dataset=eval_file))
    data = prepare_run_data(cfg)
    assert len(data.eval) == 9 and len(data.splits.leaked) == 1
    assert row_key(data.splits.leaked[0]) == row_key(leaked)
    assert all(row_key(r) != row_key(leaked) for r in data.eval)
    assert "Removed 1 held-out row(s)" in data.note and "What is 3 plus 2?" in data.note


def test_eval_fraction_is_seeded_deterministic_and_disjoint(files):
    _, train_file, _ = files
    cfg = validate_params(params(train_file, eval_fraction=0.1))
    first, again = load_splits(cfg), load_splits(cfg)
    assert [row_key(r) for r in first.eval] == [row_key(r) for r in again.eval]
    assert len(first.eval) == 4 and len(first.train) == 36
    assert not {row_key(r) for r in first.eval} & {row_key(r) for r in first.train}
    other = load_splits(validate_params(params(train_file, eval_fraction=0.1, seed=1)))
    assert [row_key(r) for r in other.eval] != [row_key(r) for r in first.eval], "the seed picks the rows"


def test_duplicates_inside_the_training_file_cannot_leak_through_eval_fraction(files):
    tmp, _, _ = files
    rows = [chat("same question", "same answer")] * 10 + [chat(f"q{i}", f"a{i}") for i in range(10)]
    cfg = validate_params(params(write_jsonl(tmp / "dups.jsonl", rows), eval_fraction=0.5))
    splits = load_splits(cfg)
    assert all(row_key(r) != row_key(rows[0]) for r in splits.eval)
    assert splits.leaked, "copies of a training row picked for the held-out side are reported"


@pytest.mark.parametrize("fraction, rows, message", [(0.99, 3, "leaves no training rows")])
def test_an_eval_fraction_that_leaves_no_training_rows_is_refused(fraction, rows, message):
    with pytest.raises(DatasetError, match=message):
        carve_fraction([chat(f"q{i}", "a") for i in range(rows)], fraction, seed=0)


def test_a_held_out_split_made_only_of_training_rows_is_refused(files):
    _, train_file, _ = files
    cfg = validate_params(params(train_file, eval_dataset=train_file))
    with pytest.raises(DatasetError, match="has no usable rows"):
        load_splits(cfg)


def test_a_missing_split_of_a_dataset_folder_is_refused_with_the_splits_it_has(tmp_path, files):
    _, train_file, eval_file = files
    folder = tmp_path / "my_dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text(Path(train_file).read_text())
    (folder / "test.jsonl").write_text(Path(eval_file).read_text())
    cfg = validate_params(params(train_file, eval_dataset=str(folder), eval_split="validation"))
    with pytest.raises(DatasetError, match="eval_split: .* has no split 'validation'"):
        load_splits(cfg)
    assert len(load_splits(validate_params(params(train_file, eval_dataset=str(folder)))).eval) == 10  # test


@pytest.mark.parametrize("extra, message", [
    ({"eval_dataset": "x.jsonl", "eval_fraction": 0.1}, "both choose the held-out rows"),
    ({"eval_steps": 5}, "need held-out rows"),
    ({"eval_scorers": []}, None),
    ({"eval_dataset": "embedded/json-answers"}, "scores would measure the embedded task"),
    ({"eval_fraction": 0.05, "early_stopping_patience": 2}, "set eval_steps"),
    ({"eval_fraction": 1.0}, "less than 1"),
])
def test_eval_params_that_cannot_work_are_refused(files, extra, message):
    _, train_file, _ = files
    values = params(train_file, **extra)
    if message is None:
        validate_params(values)
        return
    with pytest.raises(ParamsError, match=message):
        validate_params(values)


def test_scorers_are_tried_on_the_first_held_out_row(files):
    _, train_file, eval_file = files
    cfg = validate_params(params(train_file, eval_dataset=eval_file, eval_scorers=["regex:^Réponse"]))
    with pytest.raises(ParamsError, match="gives the reference answer of the first held-out row"):
        prepare_run_data(cfg)
    ok = prepare_run_data(validate_params(params(train_file, eval_dataset=eval_file,
                                                 eval_scorers=["regex:^Answer: [0-9]+$"], eval_examples=3)))
    assert len(ok.scored_rows) == 3 and len(ok.eval) == 10


def test_the_embedded_json_task_keeps_its_own_held_out_split():
    data = prepare_run_data(validate_params({}))
    assert len(data.eval) == 69 and len(data.train) == 263 and not data.splits.leaked
    assert [s.name for s in data.scorers] == ["json_shape", "json_topic", "json_answer"]
