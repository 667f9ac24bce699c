"""Rows longer than max_seq_length are counted before training and truncated or dropped as the params say."""

from __future__ import annotations

import pytest

from loralab.data.chat_rows import DatasetError, load_chat_rows
from loralab.data.row_lengths import conversation_lengths, fit_rows_to_length
from loralab.params.errors import ParamsError
from loralab.params.run_config import validate_params


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from loralab.model.embedded import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("embedded/smollm2-135m-instruct"))


def _row(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    short = [_row(f"What is {i} + {i}?", str(2 * i)) for i in range(6)]
    long_answer = _row("Tell me a story.", "once upon a time " * 60)
    long_prompt = _row("word " * 200, "ok")
    return [*short, long_answer, long_prompt]


def test_lengths_are_what_the_chat_template_tokenizes_to(tokenizer, rows):
    lengths = conversation_lengths(rows, tokenizer)
    for row, n in zip(rows, lengths, strict=True):
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        assert n == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    assert max(lengths[:6]) < 64 < min(lengths[6:])


def test_truncate_keeps_every_row_and_says_how_many_are_cut(tokenizer, rows):
    kept, note = fit_rows_to_length(rows, tokenizer, 64, "truncate")
    assert kept == rows
    assert note.startswith("2 of 8 rows are longer than max_seq_length=64 tokens")
    assert "1 of them do not fit even without the answer" in note and "overlong_rows: drop" in note


def test_drop_removes_exactly_the_long_rows(tokenizer, rows):
    kept, note = fit_rows_to_length(rows, tokenizer, 64, "drop")
    assert kept == rows[:6]
    assert note.startswith("dropped 2 of 8 rows longer than max_seq_length=64 tokens") and "6 remain" in note


def test_rows_that_fit_are_reported_as_fitting(tokenizer, rows):
    kept, note = fit_rows_to_length(rows[:6], tokenizer, 64, "drop")
    assert kept == rows[:6] and note.startswith("all 6 rows fit in max_seq_length=64")


def test_dropping_every_row_is_an_error_not_an_empty_run(tokenizer, rows):
    with pytest.raises(DatasetError, match="every one of the 2 rows is longer than max_seq_length=64"):
        fit_rows_to_length(rows[6:], tokenizer, 64, "drop")


def test_the_policy_is_a_validated_parameter():
    assert validate_params({}).overlong_rows == "truncate"
    assert validate_params({"overlong_rows": "drop"}).overlong_rows == "drop"
    with pytest.raises(ParamsError, match="overlong_rows"):
        validate_params({"overlong_rows": "cut"})


def test_the_embedded_dataset_fits_the_default_length(tokenizer):
    rows = load_chat_rows("embedded/json-answers", "train")
    kept, note = fit_rows_to_length(rows, tokenizer, validate_params({}).max_seq_length, "drop")
    assert kept == rows and note.startswith(f"all {len(rows)} rows fit")


@pytest.mark.slow
def test_counts_agree_with_what_trl_keeps_and_drops(tokenizer, rows, tmp_path):
    """TRL's own preparation (a tiny random model): truncated lengths and the dropped prompt-only row match."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    from loralab.data.chat_rows import to_prompt_completion

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    args = SFTConfig(output_dir=str(tmp_path), max_length=64, completion_only_loss=True, report_to="none",
                     use_cpu=True, dataset_num_proc=1, disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=args, train_dataset=to_prompt_completion(rows), processing_class=tokenizer)
    trl_lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    ours = conversation_lengths(rows, tokenizer)
    _, note = fit_rows_to_length(rows, tokenizer, 64, "truncate")
    assert "1 of them do not fit even without the answer" in note
    assert trl_lengths == [min(n, 64) for n in ours[:7]]  # the prompt-only row (last) was dropped by TRL
