"""Dataset reading, normalisation and the JSON task's scorer (no model needed)."""

from __future__ import annotations

import json

import pytest

from loralab.data.chat_rows import (
    DatasetError,
    load_chat_rows,
    normalise_row,
    read_jsonl,
    to_prompt_completion,
)
from loralab.data.json_answers import TOPICS, build_splits, data_file
from loralab.eval.json_shape import parse_reply
from loralab.eval.scorers import parse_scorers, score_replies


def test_shipped_dataset_is_what_the_generator_makes():
    splits = build_splits(seed=0)
    for split in ("train", "eval"):
        assert read_jsonl(data_file(split)) == splits[split], "run scripts/make_dataset.py"
    assert len(splits["train"]) >= 200 and len(splits["eval"]) >= 30


def test_eval_questions_are_held_out():
    splits = build_splits(seed=0)
    train_q = {r["messages"][0]["content"] for r in splits["train"]}
    eval_q = {r["messages"][0]["content"] for r in splits["eval"]}
    assert not train_q & eval_q


def test_every_target_reply_has_the_shape_the_scorer_wants():
    for row in build_splits(seed=0)["train"]:
        parsed = parse_reply(row["messages"][-1]["content"])
        assert parsed == {"topic": row["topic"], "answer": row["answer"]}
        assert parsed["topic"] in TOPICS


@pytest.mark.parametrize("reply, ok", [
    ('{"topic": "math", "answer": "12"}', True),
    ('  {"answer": "Lima", "topic": "geography"}\n', True),
    ('{"topic": "math", "answer": ""}', False),
    ('{"topic": "cooking", "answer": "x"}', False),
    ('{"topic": "math", "answer": "1", "extra": 1}', False),
    ('{"topic": "math", "answer": 12}', False),
    ("The answer is 12.", False),
    ('{"topic": "math", "answer": "12"} and more', False),
    ("[]", False),
])
def test_parse_reply_checks_the_shape(reply, ok):
    assert (parse_reply(reply) is not None) is ok


def test_score_replies_counts_shape_topic_and_answer():
    rows = build_splits(seed=0)["eval"][:4]
    replies = [rows[0]["messages"][-1]["content"], json.dumps({"topic": rows[1]["topic"], "answer": "wrong"}),
               "prose", json.dumps({"topic": "time" if rows[3]["topic"] != "time" else "math", "answer": "x"})]
    references = [row["messages"][-1]["content"] for row in rows]
    scorers = parse_scorers(["json_shape", "json_topic", "json_answer"])
    means = score_replies(scorers, replies, references).means
    assert means == {"json_shape": 0.75, "json_topic": 0.5, "json_answer": 0.25}
    with pytest.raises(ValueError, match="pair up"):
        score_replies(scorers, replies[:3], references)


def test_formats_are_normalised_to_messages():
    expected = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    assert normalise_row(expected, "r") == expected
    sharegpt = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    assert normalise_row(sharegpt, "r") == expected
    assert normalise_row({"instruction": "Hi", "input": "", "output": "Hello"}, "r") == expected


@pytest.mark.parametrize("row, message", [
    ({"text": "raw"}, "unknown row format"),
    ({"messages": []}, "missing or empty"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "role must be one of"),
    ({"messages": [{"role": "user", "content": ["x"]}]}, "content must be text"),
    ({"messages": [{"role": "user", "content": "x"}]}, "no assistant turn"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                   {"role": "user", "content": "z"}]}, "end with an assistant turn"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}]}, "answer is empty"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "url": "a.png"}]},
                   {"role": "assistant", "content": "a cat"}]}, "text only"),
    ({"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "y"}]}, "content must be text"),
    ({"messages": "hi"}, "missing or empty"),
    ({"conversations": [{"from": ["human"], "value": "x"}]}, "needs 'from'"),
    ({"conversations": "hi"}, "must be a list"),
    ({"instruction": ["x"], "output": "y"}, "must be text"),
    ({"instruction": "x", "input": {"a": 1}, "output": "y"}, "must be text"),
    ({"instruction": "x", "output": 3}, "content must be text"),
    ("not a dict", "expected a JSON object"),
])
def test_malformed_rows_name_the_row_and_the_fix(row, message):
    with pytest.raises(DatasetError, match=message):
        normalise_row(row, "data.jsonl row 7")


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n{oops\n')
    with pytest.raises(DatasetError, match="line 2"):
        load_chat_rows(str(path))
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    with pytest.raises(DatasetError, match="no rows"):
        load_chat_rows(str(empty))


def test_prompt_completion_split_keeps_only_the_last_answer_as_completion():
    rows = load_chat_rows("embedded/json-answers", "train")[:3]
    ds = to_prompt_completion(rows)
    assert ds.column_names == ["prompt", "completion"]
    assert ds[0]["prompt"] == rows[0]["messages"][:-1]
    assert ds[0]["completion"] == [rows[0]["messages"][-1]]


def test_text_parts_are_joined_into_text():
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
                        {"role": "assistant", "content": "Hello"}]}
    assert normalise_row(row, "r")["messages"][0]["content"] == "Hi there"


def test_jsonl_files_keep_their_line_numbered_errors_and_other_files_are_read(tmp_path):
    array = tmp_path / "rows.json"  # a JSON array: read by the datasets library, Alpaca rows as they are
    array.write_text(json.dumps([{"instruction": "a", "output": "b"}]))
    assert load_chat_rows(str(array))[0]["messages"][-1] == {"role": "assistant", "content": "b"}
    pretty = tmp_path / "pretty.jsonl"
    pretty.write_text('[\n  {"instruction": "a", "output": "b"}\n]\n')
    with pytest.raises(DatasetError, match=r"line 1.*one JSON array"):
        load_chat_rows(str(pretty))
    binary = tmp_path / "blob.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DatasetError, match="not UTF-8"):
        load_chat_rows(str(binary))
    with pytest.raises(DatasetError, match="does not exist"):
        load_chat_rows(str(tmp_path / "missing.jsonl"))
    csv = tmp_path / "rows.csv"  # Alpaca columns in a CSV: a chat format, no column map needed
    csv.write_text("instruction,input,output\na,,b\n")
    assert load_chat_rows(str(csv)) == [{"messages": [{"role": "user", "content": "a"},
                                                      {"role": "assistant", "content": "b"}]}]


def test_jsonl_lines_are_split_on_newlines_only(tmp_path):
    row = {"messages": [{"role": "user", "content": "a\u2028b\x1cc"}, {"role": "assistant", "content": "ok"}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\r\n" + json.dumps(row) + "\n", encoding="utf-8")
    assert load_chat_rows(str(path)) == [row, row]


def test_a_bad_row_deep_in_a_file_is_named_by_its_row(tmp_path):
    good = {"instruction": "a", "output": "b"}
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [good, good, {"messages": [{"role": "bot", "content": "x"}]}]))
    with pytest.raises(DatasetError, match=r"d\.jsonl line 3, message 0: role must be one of"):
        load_chat_rows(str(path))
    path.write_text("\n".join(json.dumps(r) for r in [good, good]) + "\n\n\n" + json.dumps({"output": "x"}) + "\n")
    with pytest.raises(DatasetError, match=r"d\.jsonl line 5\b"):  # blank lines count, as in an editor
        load_chat_rows(str(path))
