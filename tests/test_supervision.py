"""What the model trains on: supervised tokens counted as TRL's trainer builds them, refusals, the marked view.

Fast tests use the tokenizer only (the tiny model's folder: the embedded model's tokenizer and ChatML template).
A copy of that folder whose chat template drops ``<|im_end|>`` after the assistant's answer stands for a
template that leaves the answer without an end-of-turn token. The slow tests build the real SFT trainer on
the tiny model (its tokenized dataset must equal ``row_tokens``) and run notebook 01 once through
``loralab run`` (metrics.json's ``supervision``, the manifest's end-of-turn token, the marked view).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import TINY_MODEL
from loralab.data.supervision import (
    SupervisionError,
    check_preference_supervision,
    check_supervision,
    end_of_turn_token,
    row_tokens,
    supervision_report,
)

REPO = Path(__file__).resolve().parents[1]
NB01 = str(REPO / "notebooks" / "01_qlora_finetune.ipynb")


@pytest.fixture(scope="module")
def tiny_folder() -> Path:
    from loralab.model.embedded import resolve_model_path

    return Path(resolve_model_path(TINY_MODEL))


@pytest.fixture(scope="module")
def tokenizer(tiny_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_folder))


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    from loralab.data.chat_rows import load_chat_rows

    return load_chat_rows("embedded/json-answers", "train")


@pytest.fixture(scope="module")
def no_end_folder(tmp_path_factory, tiny_folder) -> Path:
    """The tiny model with a chat template that writes no <|im_end|> after the assistant's answer."""
    folder = tmp_path_factory.mktemp("no-end") / "tiny-no-end-of-turn"
    shutil.copytree(tiny_folder, folder)
    template = (folder / "chat_template.jinja").read_text()
    edited = template.replace("message['content'] + '<|im_end|>'",
                              "message['content'] + ('' if message['role'] == 'assistant' else '<|im_end|>')")
    assert edited != template
    (folder / "chat_template.jinja").write_text(edited)
    return folder


def test_the_chatml_end_of_turn_token_is_found_and_every_answer_keeps_it(tokenizer, rows):
    assert end_of_turn_token(tokenizer) == "<|im_end|>"
    kept, report = check_supervision(rows, tokenizer, 256)
    metrics = report.metrics()
    assert kept == rows and metrics["rows"] == len(rows) and metrics["rows_dropped_no_answer_token"] == 0
    assert metrics["answers_without_end_of_turn"] == 0 and metrics["end_of_turn_token"] == "<|im_end|>"
    # the JSON answers are about a quarter of each ChatML conversation (system prompt, question, answer)
    assert 0.15 < metrics["supervised_share_row_min"] <= metrics["supervised_share_row_median"] < 0.5
    assert 0.15 < metrics["supervised_share"] < 0.5
    total = sum(len(t.input_ids) for t in report.tokens)
    assert metrics["tokens"] == total and metrics["supervised_tokens"] == sum(t.supervised for t in report.tokens)
    assert "every answer ends with the end-of-turn token '<|im_end|>'" in report.message


def test_the_answer_is_what_follows_the_generation_prompt(tokenizer, rows):
    tokens = row_tokens(rows[0]["messages"], tokenizer, None)
    answer = tokenizer.decode([t for t, m in zip(tokens.input_ids, tokens.completion_mask, strict=True) if m])
    assert answer == rows[0]["messages"][-1]["content"] + "<|im_end|>\n"
    context = tokenizer.decode([t for t, m in zip(tokens.input_ids, tokens.completion_mask, strict=True) if not m])
    assert context.endswith("<|im_start|>assistant\n") and rows[0]["messages"][0]["content"] in context


def test_every_answer_cut_away_by_max_seq_length_is_refused_in_one_line(tokenizer, rows):
    with pytest.raises(SupervisionError) as refused:
        check_supervision(rows, tokenizer, 32)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("every answer is cut away by max_seq_length=32: the prompts take 37-40 tokens")
    assert "Raise max_seq_length" in message


def test_answers_that_lose_their_end_are_counted_and_all_of_them_refused(tokenizer, rows):
    long_answer = [{"messages": [{"role": "user", "content": "Count."},
                                 {"role": "assistant", "content": " ".join(str(i) for i in range(40))}]}]
    _, report = check_supervision(rows[:5] + long_answer, tokenizer, 64)
    assert report.without_end == [5] and report.metrics()["answers_without_end_of_turn"] == 1
    assert "1 answer(s) lose their end-of-turn token '<|im_end|>' to max_seq_length=64 (rows 6)" in report.message
    with pytest.raises(SupervisionError, match=r"^no answer keeps its end-of-turn token '<\|im_end\|>': "
                                               r"max_seq_length=45 cuts the end off every one"):
        check_supervision(rows[:5], tokenizer, 45)


def test_a_few_rows_without_an_answer_token_are_dropped_and_counted(tokenizer, rows):
    long_prompt = {"messages": [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]}
    kept, report = check_supervision([*rows[:4], long_prompt, rows[4]], tokenizer, 128)
    assert kept == [*rows[:4], rows[4]] and report.dropped == [4]
    assert report.metrics()["rows_dropped_no_answer_token"] == 1 and report.metrics()["rows"] == 5
    assert "dropped 1 row(s) with no answer token left after max_seq_length=128 (rows 5)" in report.message


def test_a_template_without_an_end_of_turn_token_is_refused_in_one_line(no_end_folder, rows):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(no_end_folder))
    assert end_of_turn_token(tokenizer) is None
    with pytest.raises(SupervisionError) as refused:
        check_supervision(rows, tokenizer, 256)
    message = str(refused.value)
    assert "\n" not in message.replace("'\\n'", "")
    assert message.startswith("the chat template puts no end-of-turn token after the assistant's answer (it writes "
                              "'\\n' after it), so the model never learns to stop")


def test_a_template_that_swallows_the_answer_is_refused(tokenizer, rows):
    import copy

    swallowing = copy.deepcopy(tokenizer)
    swallowing.chat_template = tokenizer.chat_template.replace("{{'<|im_start|>' + message['role']",
                                                               "{% if message['role'] != 'assistant' %}"
                                                               "{{'<|im_start|>' + message['role']", 1).replace(
        "'<|im_end|>' + '\n'}}", "'<|im_end|>' + '\n'}}{% endif %}", 1)
    assert swallowing.chat_template != tokenizer.chat_template
    with pytest.raises(SupervisionError, match="^no row has a single answer token to learn: the chat template"):
        check_supervision(rows[:3], swallowing, 256)


def test_the_torch_free_tokenizer_gives_the_ids_and_verdicts_of_transformers(tokenizer, tiny_folder, no_end_folder,
                                                                             rows):
    from transformers import AutoTokenizer

    from loralab.data.short_answers import short_answer_rows
    from loralab.data.template_tokenizer import folder_tokenizer

    light = folder_tokenizer(tiny_folder)
    for row in rows + short_answer_rows("train"):
        for limit in (None, 48):
            assert row_tokens(row["messages"], light, limit) == row_tokens(row["messages"], tokenizer, limit)
    assert supervision_report(rows, light, 48).metrics() == supervision_report(rows, tokenizer, 48).metrics()
    assert end_of_turn_token(folder_tokenizer(no_end_folder)) is None
    assert end_of_turn_token(AutoTokenizer.from_pretrained(str(no_end_folder))) is None


def test_preference_answers_are_checked_the_same_way(tokenizer):
    from loralab.data.preference_rows import load_preference_rows

    pairs = load_preference_rows("embedded/concise-answers", "train", "dpo")
    report = check_preference_supervision(SimpleNamespace(max_seq_length=160, model_name=TINY_MODEL), pairs, tokenizer)
    assert report.metrics()["rows"] == 2 * len(pairs) and report.unit == "answer"
    assert "answers (per answer: min" in report.message
    with pytest.raises(SupervisionError, match="^every answer is cut away by max_seq_length=16"):
        check_preference_supervision(SimpleNamespace(max_seq_length=16, model_name=TINY_MODEL), pairs, tokenizer)
    kto = load_preference_rows("embedded/concise-answers", "train", "kto")
    assert check_preference_supervision(SimpleNamespace(max_seq_length=160, model_name=TINY_MODEL), kto,
                                        tokenizer).metrics()["rows"] == len(kto)


def test_the_view_marks_the_supervised_and_the_cut_tokens(tokenizer, rows):
    from loralab.data.supervision_view import supervision_view

    answer = rows[0]["messages"][-1]["content"]
    text = str(supervision_view(rows[:2], tokenizer, 256))
    assert f"[[{answer}<|im_end|>\n]]" in text and text.count("--- row ") == 2
    cut = supervision_view(rows[:1], tokenizer, 48)
    assert "<<cut: " in str(cut) and "[[" in str(cut)
    page = cut._repr_html_()
    assert "background:#c8f7c5" in page and "line-through" in page and "&lt;|im_start|&gt;" in page
    assert f"{cut.rows[0].supervised} of 48 tokens supervised" in page


def test_loralab_run_refuses_before_the_kernel_in_one_line(no_end_folder, tmp_path, capsys, monkeypatch):
    from loralab.cli import main
    from loralab.runs import runner

    monkeypatch.setattr(runner, "_execute", lambda *a, **k: pytest.fail("the kernel was started"))
    for extra, expected in ((["-p", "model_name", str(no_end_folder)], "the chat template puts no end-of-turn token"),
                            (["-p", "model_name", TINY_MODEL, "-p", "max_seq_length", "32"],
                             "every answer is cut away by max_seq_length=32: the prompts take 37-40 tokens")):
        assert main(["run", NB01, *extra, "--runs-root", str(tmp_path / "runs")]) == 2
        out = capsys.readouterr().out
        assert out.startswith("error: ") and expected in out and out.strip().count("\n") == 0, out
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


# --- with the model -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("packing", ["none", "padding_free"])
def test_row_tokens_equal_the_sft_trainers_tokenized_rows(tmp_path, rows, packing):
    """The trainer's own dataset (TRL 1.15 on Unsloth's CPU backend): ids, and the labels where the loss is."""
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.data.short_answers import short_answer_rows
    from loralab.model.loading import attach_lora, load_model
    from loralab.params.run_config import validate_params
    from loralab.train.trainer import build_trainer

    long_prompt = {"messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "ok"}]}
    short = short_answer_rows("train")[:5]  # 46-48 tokens: whole at 48, where the JSON rows (52-57) lose their end
    chosen = [*rows[:3], *short[:3], long_prompt, *rows[3:6], *short[3:]]
    cfg = validate_params({"model_name": TINY_MODEL, "max_seq_length": 48, "max_steps": 1, "packing": packing,
                           "per_device_train_batch_size": 2, "save_steps": 0, "eval_dataset": ""})
    model, tokenizer = load_model(cfg)
    trainer = build_trainer(attach_lora(model, cfg), tokenizer, to_prompt_completion(chosen), cfg,
                            output_dir=tmp_path / packing)
    kept, report = check_supervision(chosen, tokenizer, 48)
    assert report.dropped == [6] and report.without_end  # the long prompt is dropped; some answers lose their end
    prepared = trainer.train_dataset
    assert len(prepared) == len(kept)  # TRL dropped the same row
    ours = report.kept
    for i, example in enumerate(prepared):
        assert example["input_ids"] == ours[i].input_ids
        supervised = [int(label != -100) for label in example["labels"]]
        assert supervised == ours[i].completion_mask


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """Notebook 01 through ``loralab run`` on the tiny model, 2 steps, max_seq_length 54 (31 of 263 answers cut)."""
    from loralab.runs.runner import run_notebook

    params = {"model_name": TINY_MODEL, "max_steps": 2, "max_seq_length": 54, "eval_examples": 2, "show_examples": 0,
              "save_steps": 0, "per_device_train_batch_size": 4}
    return run_notebook(NB01, params, runs_root=tmp_path_factory.mktemp("supervision"), run_name="tiny", timeout_s=600)


@pytest.mark.slow
def test_a_run_records_what_it_supervised_and_shows_it(tiny_run, tokenizer, rows):
    from loralab.data.row_lengths import fit_rows_to_length
    from loralab.eval.prepare import prepare_run_data
    from loralab.params.run_config import validate_params

    metrics = json.loads((tiny_run / "metrics.json").read_text())
    cfg = validate_params(metrics["params"])
    fitted, _ = fit_rows_to_length(prepare_run_data(cfg).train, tokenizer, 54, "truncate")
    _, expected = check_supervision(fitted, tokenizer, 54)
    assert metrics["supervision"] == expected.metrics()
    assert metrics["supervision"]["answers_without_end_of_turn"] > 0  # 54 tokens cut some answers' ends
    manifest = json.loads((tiny_run / "adapter" / "loralab_manifest.json").read_text())
    assert manifest["training_end_of_turn_token"] == "<|im_end|>"
    notebook = json.loads((tiny_run / "01_qlora_finetune.ipynb").read_text())
    outputs = [out for cell in notebook["cells"] if cell["cell_type"] == "code" for out in cell.get("outputs", [])]
    shown = [out["data"] for out in outputs if "text/html" in out.get("data", {})
             and "tokens supervised" in "".join(out["data"]["text/html"])]
    assert shown and "[[" in "".join(shown[0]["text/plain"]), "the marked view is not in the data section"
    printed = "".join("".join(out.get("text", "")) for out in outputs)
    assert "the loss is computed on " in printed and "answer tokens" in printed
