"""Preference rows for DPO / ORPO / KTO and the embedded concise-answers set (no model needed)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from loralab.data.chat_rows import DatasetError, read_jsonl
from loralab.data.concise_answers import concise_answer_pairs, is_one_concise_sentence
from loralab.data.json_answers import data_file
from loralab.data.preference_rows import EMBEDDED_CONCISE_ANSWERS, load_preference_rows

Q, GOOD, BAD = "What is 2 plus 2?", "The answer is 4.", "Well, it might be 4, but who knows."
USER = {"role": "user", "content": Q}
NORMALISED = {"prompt": [USER], "chosen": [{"role": "assistant", "content": GOOD}],
              "rejected": [{"role": "assistant", "content": BAD}]}

PLAIN = {"prompt": Q, "chosen": GOOD, "rejected": BAD}
CONVERSATIONAL = {"prompt": [USER], "chosen": [{"role": "assistant", "content": GOOD}],
                  "rejected": [{"role": "assistant", "content": BAD}]}
IMPLICIT = {"chosen": [USER, {"role": "assistant", "content": GOOD}],
            "rejected": [USER, {"role": "assistant", "content": BAD}]}
TEXT_PARTS = {"prompt": [{"role": "user", "content": [{"type": "text", "text": Q}]}],
              "chosen": [{"role": "assistant", "content": [{"type": "text", "text": GOOD}]}], "rejected": BAD}


def write_jsonl(tmp_path, rows, name="prefs.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows),
                    encoding="utf-8")
    return str(path)


# --- accepted formats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dpo", "orpo"])
@pytest.mark.parametrize("row", [PLAIN, CONVERSATIONAL, IMPLICIT, TEXT_PARTS],
                         ids=["plain", "chat", "implicit", "text-parts"])
def test_every_paired_format_normalises_to_one_shape(tmp_path, row, method):
    path = write_jsonl(tmp_path, [dict(row, extra="ignored")])
    assert load_preference_rows(path, "train", method) == [NORMALISED]


def test_a_system_turn_and_a_multi_turn_prompt_are_kept(tmp_path):
    system = {"role": "system", "content": "Be brief."}
    earlier = [system, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}, USER]
    implicit = {"chosen": earlier + [{"role": "assistant", "content": GOOD}],
                "rejected": earlier + [{"role": "assistant", "content": BAD}]}
    explicit = {"prompt": earlier, "chosen": GOOD, "rejected": BAD}
    rows = load_preference_rows(write_jsonl(tmp_path, [implicit, explicit]), "train", "dpo")
    assert rows[0] == rows[1] == dict(NORMALISED, prompt=earlier)


def test_kto_rows_normalise(tmp_path):
    rows = [{"prompt": Q, "completion": GOOD, "label": True},
            {"prompt": [USER], "completion": [{"role": "assistant", "content": BAD}], "label": False}]
    assert load_preference_rows(write_jsonl(tmp_path, rows), "train", "kto") == [
        {"prompt": [USER], "completion": [{"role": "assistant", "content": GOOD}], "label": True},
        {"prompt": [USER], "completion": [{"role": "assistant", "content": BAD}], "label": False},
    ]


def test_kto_expands_each_pair_into_a_good_and_a_bad_row(tmp_path):
    path = write_jsonl(tmp_path, [PLAIN, IMPLICIT, CONVERSATIONAL])
    rows = load_preference_rows(path, "train", "kto")
    assert len(rows) == 6
    assert [row["label"] for row in rows] == [True, False] * 3
    assert rows[0] == {"prompt": [USER], "completion": NORMALISED["chosen"], "label": True}
    assert rows[1] == {"prompt": [USER], "completion": NORMALISED["rejected"], "label": False}


def test_trl_reads_normalised_rows_as_conversational(tmp_path):
    from trl.data_utils import is_conversational

    path = write_jsonl(tmp_path, [PLAIN])
    (pair,) = load_preference_rows(path, "train", "dpo")
    good, bad = load_preference_rows(path, "train", "kto")
    assert is_conversational(pair) and is_conversational(good) and is_conversational(bad)
    for key in ("prompt", "chosen", "rejected"):
        assert is_conversational({key: pair[key]})
    assert is_conversational({"completion": good["completion"]})


def test_hub_rows_are_numbered_from_one(monkeypatch):
    def fake_load_dataset(name, split, **kwargs):
        return [PLAIN, {"prompt": Q, "chosen": GOOD, "rejected": " "}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=fake_load_dataset))
    with pytest.raises(DatasetError, match=r"org/prefs\[train\] row 2: 'rejected' is empty"):
        load_preference_rows("org/prefs", "train", "dpo")


# --- refusals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_kto_rows_are_refused_for_paired_methods(tmp_path, method):
    path = write_jsonl(tmp_path, [PLAIN, {"prompt": Q, "completion": GOOD, "label": True}])
    expected = r"prefs\.jsonl line 2: these are KTO rows .*use method: kto"
    with pytest.raises(DatasetError, match=expected) as error:
        load_preference_rows(path, "train", method)
    assert '"chosen"' in str(error.value)  # shows what a pair looks like


@pytest.mark.parametrize("row, message", [
    ({"chosen": GOOD, "rejected": BAD}, "no prompt"),
    ({"prompt": None, "chosen": GOOD, "rejected": BAD}, "no prompt"),
    ({"chosen": [USER, {"role": "assistant", "content": GOOD}],
      "rejected": [{"role": "user", "content": "Other?"}, {"role": "assistant", "content": BAD}]},
     "no prompt"),
    ({"prompt": Q, "chosen": "   ", "rejected": BAD}, "'chosen' is empty"),
    ({"prompt": Q, "chosen": GOOD, "rejected": ""}, "'rejected' is empty"),
    ({"prompt": Q, "chosen": [{"role": "assistant", "content": " \n"}], "rejected": BAD},
     "'chosen' is empty"),
    ({"prompt": Q, "chosen": GOOD, "rejected": f"  {GOOD} "}, "nothing to prefer"),
    ({"chosen": [USER, {"role": "assistant", "content": GOOD}],
      "rejected": [USER, {"role": "assistant", "content": GOOD}]}, "nothing to prefer"),
    ({"prompt": Q, "chosen": GOOD}, "no 'rejected'"),
    ({"prompt": Q, "chosen": GOOD, "rejected": [{"role": "bot", "content": BAD}]}, "role must be one of"),
    ({"prompt": [{"role": "human", "content": Q}], "chosen": GOOD, "rejected": BAD}, "role must be one of"),
    ({"prompt": Q, "chosen": [{"role": "assistant", "content": [{"type": "image", "url": "x.png"}]}],
      "rejected": BAD}, "text only"),
    ({"prompt": Q, "chosen": GOOD, "rejected": 4}, "text or a non-empty list"),
    ({"prompt": Q, "chosen": [{"role": "user", "content": GOOD}], "rejected": BAD},
     "must be an assistant reply"),
    ({"prompt": Q, "chosen": IMPLICIT["chosen"], "rejected": BAD}, "drop \"prompt\""),
    ({"prompt": [{"role": "assistant", "content": "Hi"}], "chosen": GOOD, "rejected": BAD},
     "end with a user turn"),
    ({"prompt": " ", "chosen": GOOD, "rejected": BAD}, "last user turn is empty"),
    ({"question": Q, "answer": GOOD}, "unknown row format"),
    ({"prompt": Q, "chosen": GOOD, "rejected": BAD, "label": True}, "mixes paired keys"),
    ('"just text"', "expected a JSON object"),
])
def test_bad_paired_rows_are_refused_naming_the_line(tmp_path, row, message):
    path = write_jsonl(tmp_path, [PLAIN, "", row])  # the blank line counts, as in an editor
    with pytest.raises(DatasetError, match="line 3") as error:
        load_preference_rows(path, "train", "dpo")
    assert str(error.value).startswith(f"{path} line 3") and message in str(error.value)


@pytest.mark.parametrize("row, message", [
    ({"prompt": Q, "completion": GOOD, "label": "yes"}, "must be true"),
    ({"prompt": Q, "completion": GOOD, "label": 1}, "must be true"),
    ({"prompt": Q, "completion": GOOD, "label": None}, "must be true"),
    ({"prompt": Q, "completion": GOOD}, "no \"label\""),
    ({"prompt": Q, "label": True}, "needs \"completion\""),
    ({"completion": GOOD, "label": True}, "no prompt"),
    ({"prompt": Q, "completion": " ", "label": False}, "'completion' is empty"),
    ({"prompt": Q, "completion": [{"role": "tool", "content": GOOD}], "label": True}, "role must be one of"),
    ({"prompt": Q, "chosen": GOOD, "rejected": GOOD}, "nothing to prefer"),
])
def test_bad_kto_rows_are_refused_naming_the_line(tmp_path, row, message):
    path = write_jsonl(tmp_path, [{"prompt": Q, "completion": GOOD, "label": True}, row])
    with pytest.raises(DatasetError) as error:
        load_preference_rows(path, "train", "kto")
    assert str(error.value).startswith(f"{path} line 2") and message in str(error.value)


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_an_empty_file_is_refused_with_an_example(tmp_path, method):
    path = write_jsonl(tmp_path, ["", "  "])
    with pytest.raises(DatasetError, match="has no rows") as error:
        load_preference_rows(path, "train", method)
    assert path in str(error.value) and '"prompt"' in str(error.value)


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = write_jsonl(tmp_path, [PLAIN, "{not json"])
    with pytest.raises(DatasetError, match=r"prefs\.jsonl, line 2: not JSON"):
        load_preference_rows(path, "train", "dpo")


def test_a_local_file_that_is_not_jsonl_is_read(tmp_path):
    path = tmp_path / "prefs.json"  # a JSON array, read by the datasets library
    path.write_text(json.dumps([PLAIN]))
    assert load_preference_rows(str(path), "train", "dpo")[0]["chosen"] == [{"role": "assistant", "content": GOOD}]


def test_unknown_embedded_name_split_and_method_are_refused():
    with pytest.raises(DatasetError, match="not an embedded preference dataset.*embedded/concise-answers"):
        load_preference_rows("embedded/json-answers", "train", "dpo")
    with pytest.raises(DatasetError, match=r"splits 'train' and 'eval' and slices of them.*, not 'test'"):
        load_preference_rows(EMBEDDED_CONCISE_ANSWERS, "test", "dpo")
    with pytest.raises(DatasetError, match="method must be one of dpo, orpo, kto"):
        load_preference_rows(EMBEDDED_CONCISE_ANSWERS, "train", "ppo")


# --- the embedded set ---------------------------------------------------------------------------------------


def test_embedded_set_has_one_pair_per_question():
    train, evals = concise_answer_pairs("train"), concise_answer_pairs("eval")
    assert len(train) == len(read_jsonl(data_file("train"))) == 263
    assert len(evals) == len(read_jsonl(data_file("eval"))) == 69
    assert len(load_preference_rows(EMBEDDED_CONCISE_ANSWERS, "train", "dpo")) == 263
    assert len(load_preference_rows(EMBEDDED_CONCISE_ANSWERS, "eval", "orpo")) == 69
    kto = load_preference_rows(EMBEDDED_CONCISE_ANSWERS, "train", "kto")
    assert len(kto) == 2 * 263 and sum(row["label"] for row in kto) == 263


def test_embedded_eval_shares_no_prompt_with_train():
    train = {pair["prompt"] for pair in concise_answer_pairs("train")}
    evals = {pair["prompt"] for pair in concise_answer_pairs("eval")}
    assert not train & evals


def test_embedded_pairs_prefer_one_short_correct_sentence():
    for split in ("train", "eval"):
        questions = read_jsonl(data_file(split))
        for pair, question in zip(concise_answer_pairs(split), questions, strict=True):
            assert pair["prompt"] == question["messages"][0]["content"]
            assert pair["chosen"] == f"The answer is {question['answer']}."
            assert pair["chosen"] != pair["rejected"] and question["answer"] in pair["rejected"]
            assert is_one_concise_sentence(pair["chosen"]), pair["chosen"]
            assert not is_one_concise_sentence(pair["rejected"]), pair["rejected"]
            rejected = pair["rejected"]
            assert len(rejected.split()) >= 30
            assert sum(rejected.count(mark) for mark in ".!?") >= 3


def test_embedded_set_uses_several_templates_and_is_deterministic():
    train = concise_answer_pairs("train")
    assert train == concise_answer_pairs("train")
    assert concise_answer_pairs("eval") == concise_answer_pairs("eval")
    assert load_preference_rows(EMBEDDED_CONCISE_ANSWERS, "eval", "kto") == load_preference_rows(
        EMBEDDED_CONCISE_ANSWERS, "eval", "kto")
    openings = {pair["rejected"].split(",")[0].split(".")[0] for pair in train}
    assert len(openings) >= 3


@pytest.mark.parametrize("reply, ok", [
    ("The answer is Lima.", True),
    ("  The answer is 42.\n", True),
    ("Lima", True),
    ("The answer is 3.5.", True),
    ("Is it Lima?", True),
    ("The answer is Lima. It is in Peru.", False),
    ("The answer is Lima...", False),
    ("Really?!", False),
    ("Lima. ", True),
    ("", False),
    ("   ", False),
    (" ".join(["word"] * 15) + ".", True),
    (" ".join(["word"] * 16) + ".", False),
])
def test_is_one_concise_sentence(reply, ok):
    assert is_one_concise_sentence(reply) is ok
