"""The embedded datasets take a slice of a split as hub datasets do (``eval[:24]``), for SFT, preference and
GRPO rows; a split they do not have, or a slice written wrong, is refused with the form to write."""

from __future__ import annotations

import pytest

from loralab.data.chat_rows import load_chat_rows
from loralab.data.errors import DatasetError
from loralab.data.grpo_prompts import load_prompt_rows
from loralab.data.heldout import load_eval_rows
from loralab.data.preference_rows import load_preference_rows


def test_a_slice_is_the_rows_the_datasets_library_would_pick():
    full = load_chat_rows("embedded/json-answers", "eval")
    assert load_chat_rows("embedded/json-answers", "eval[:24]") == full[:24]
    assert load_chat_rows("embedded/json-answers", "eval[-5:]") == full[-5:]
    assert load_chat_rows("embedded/json-answers", "eval[:10%]") == full[:7]  # 69 rows: 10% rounds to 7
    train = load_chat_rows("embedded/json-answers", "train")
    assert load_chat_rows("embedded/json-answers", "train[:2]+eval[:3]") == train[:2] + full[:3]
    assert load_eval_rows("embedded/json-answers", "eval[:24]") == full[:24]  # eval_split in the params


def test_preference_and_grpo_rows_take_slices_too():
    pairs = load_preference_rows("embedded/concise-answers", "eval", "dpo")
    assert load_preference_rows("embedded/concise-answers", "eval[3:8]", "dpo") == pairs[3:8]
    prompts = load_prompt_rows("embedded/answer-format", "train")
    assert load_prompt_rows("embedded/answer-format", "train[-4:]") == prompts[-4:]


@pytest.mark.parametrize(("split", "message"), [
    ("test", r"has the splits 'train' and 'eval' and slices of them such as eval\[:24\].*, not 'test' \(Unknown split"),
    ("eval[:x]", r"not 'eval\[:x\]' \(Unrecognized instruction format"),
    ("eval[:3]+test", r"not 'eval\[:3\]\+test' \(Unknown split \"test\""),
    ("eval[5:2]", r"embedded/short-answers\[eval\[5:2\]\] has no rows"),
])
def test_a_split_the_dataset_lacks_or_a_bad_slice_is_refused(split, message):
    with pytest.raises(DatasetError, match=message):
        load_chat_rows("embedded/short-answers", split)
