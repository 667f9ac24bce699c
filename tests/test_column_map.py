"""Your data as it is: CSV, TSV, Parquet, JSON and Arrow files with their own columns, mapped to a conversation.

No model here: the reading, the column map, every refusal (one line, naming the row as a spreadsheet shows
it) and the checks ``loralab run --check`` makes before any kernel starts. Training on a CSV and a Parquet
file end to end: tests/test_own_columns_run.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from loralab.data.chat_rows import DatasetError, load_chat_rows
from loralab.data.column_map import ColumnMap
from loralab.data.heldout import load_splits
from loralab.data.preference_rows import load_preference_rows
from loralab.params.errors import ParamsError
from loralab.params.preference_config import validate_preference_params
from loralab.params.prompt_template import fill_template, template_columns
from loralab.params.run_config import validate_params

REPO = Path(__file__).resolve().parents[1]
NB01 = str(REPO / "notebooks" / "01_qlora_finetune.ipynb")
NB04 = str(REPO / "notebooks" / "04_preference_tuning.ipynb")
SMOKE = str(REPO / "params" / "01_qlora_finetune" / "smoke.yaml")
REVIEWS = "text,label\n\"Loved it, would watch again\",positive\nDull and long,negative\n"
MAP = ColumnMap("Classify this review: {text}", {"answer_column": "label"})


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def own(**params) -> dict:
    """Params of a run on a file with its own columns, no held-out split unless given."""
    return {"eval_dataset": "", "eval_scorers": [], **params}


# --- the template -------------------------------------------------------------------------------------------

def test_a_template_names_its_columns_once_and_fills_them_as_text():
    assert template_columns("Q: {question}\nContext: {context}\n{question}") == ["question", "context"]
    assert template_columns("{review text} -> {{label}}") == ["review text"]
    assert fill_template("{review text} -> {{label}}", {"review text": "Good"}) == "Good -> {label}"
    assert fill_template("{a}|{b}|{c}", {"a": None, "b": 7, "c": float("nan")}) == "|7|"


@pytest.mark.parametrize("template, expected", [
    ("Classify this review", "names no column"),
    ("Classify {{text}}", "names no column"),
    ("Classify {text", "unmatched brace"),
    ("Classify text}", "unmatched brace"),
    ("Classify {text!r}", "no conversion or format spec"),
    ("Score {score:.2f}", "no conversion or format spec"),
    ("Classify {}", "empty {}"),
])
def test_a_template_that_names_no_column_or_is_malformed_is_refused(template, expected):
    with pytest.raises(ParamsError, match="prompt_template") as error:
        validate_params(own(dataset="r.csv", prompt_template=template, answer_column="label"))
    assert expected in str(error.value) and "\n" not in str(error.value)


# --- the params: a column map is whole and maps a file ------------------------------------------------------

def test_a_template_yaml_read_as_a_mapping_is_refused_saying_to_quote_it(tmp_path):
    params_file = tmp_path / "p.yaml"
    params_file.write_text("dataset: r.csv\neval_dataset: ''\neval_scorers: []\nanswer_column: label\n"
                           "prompt_template: {text}\n")
    from loralab.params.run_config import load_params

    with pytest.raises(ParamsError, match="YAML read the braces as a mapping: quote the text"):
        load_params(params_file)


@pytest.mark.parametrize("params, expected", [
    ({"prompt_template": "{text}"}, "set answer_column"),
    ({"answer_column": "label"}, "answer_column maps a row.s column and needs prompt_template"),
    ({"system_prompt": "Be brief."}, "system_prompt goes before every row mapped by prompt_template"),
    ({"prompt_template": "{text} {label}", "answer_column": "label"}, "the prompt would hold the answer"),
])
def test_an_incomplete_column_map_is_refused_in_one_line(params, expected):
    with pytest.raises(ParamsError, match=expected) as error:
        validate_params(own(dataset="r.csv", **params))
    assert "\n" not in str(error.value)


def test_a_column_map_on_embedded_rows_is_refused():
    with pytest.raises(ParamsError, match="embedded 'embedded/json-answers', whose rows are chat rows already"):
        validate_params({"prompt_template": "{text}", "answer_column": "label"})


def test_notebook_04_maps_chosen_and_rejected_columns_not_an_answer_column():
    cfg = validate_preference_params(own(dataset="p.csv", prompt_template="{q}", chosen_column="good",
                                         rejected_column="bad"))
    assert cfg.answer_columns() == {"chosen_column": "good", "rejected_column": "bad"}
    with pytest.raises(ParamsError, match="set chosen_column and rejected_column"):
        validate_preference_params(own(dataset="p.csv", prompt_template="{q}"))
    with pytest.raises(ParamsError, match="answer_column .* is notebook 01's; notebook 04 maps"):
        validate_preference_params(own(dataset="p.csv", prompt_template="{q}", chosen_column="good",
                                       rejected_column="bad", answer_column="good"))
    with pytest.raises(ParamsError, match="name the same column"):
        validate_preference_params(own(dataset="p.csv", prompt_template="{q}", chosen_column="good",
                                       rejected_column="good"))


# --- reading files ------------------------------------------------------------------------------------------

def test_a_csv_with_its_own_columns_becomes_chat_rows(tmp_path):
    path = write(tmp_path, "reviews.csv", REVIEWS)
    rows = load_chat_rows(path, columns=ColumnMap("Classify this review: {text}", {"answer_column": "label"},
                                                  "Answer with one word."))
    assert rows[0] == {"messages": [{"role": "system", "content": "Answer with one word."},
                                    {"role": "user", "content": "Classify this review: Loved it, would watch again"},
                                    {"role": "assistant", "content": "positive"}]}
    assert len(rows) == 2


def test_csv_cells_stay_the_text_a_spreadsheet_shows(tmp_path):
    path = write(tmp_path, "codes.csv", "code,answer\n007,NA\n1.50,None\n")
    rows = load_chat_rows(path, columns=ColumnMap("Code {code}", {"answer_column": "answer"}))
    assert [r["messages"][0]["content"] for r in rows] == ["Code 007", "Code 1.50"]
    assert [r["messages"][1]["content"] for r in rows] == ["NA", "None"]


def test_tsv_parquet_arrow_json_and_jsonl_are_read_with_the_same_map(tmp_path):
    frame = pd.DataFrame({"text": ["Loved it", "Dull"], "label": ["positive", "negative"]})
    frame.to_csv(tmp_path / "r.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "r.parquet")
    frame.to_json(tmp_path / "r.json", orient="records")
    write(tmp_path, "r.jsonl", "".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    table = pa.Table.from_pandas(frame, preserve_index=False)
    with pa.OSFile(str(tmp_path / "r.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)  # the Arrow stream format datasets' save_to_disk writes
    expected = load_chat_rows(write(tmp_path, "r.csv", frame.to_csv(index=False)), columns=MAP)
    for name in ("r.tsv", "r.parquet", "r.json", "r.jsonl", "r.arrow"):
        assert load_chat_rows(str(tmp_path / name), columns=MAP) == expected, name


def test_the_three_chat_formats_in_a_csv_or_parquet_file_need_no_map(tmp_path):
    path = write(tmp_path, "alpaca.csv", "instruction,input,output\nSay hi,,Hi\nAdd,2 and 2,4\n")
    rows = load_chat_rows(path)
    assert rows[1]["messages"] == [{"role": "user", "content": "Add\n\n2 and 2"},
                                   {"role": "assistant", "content": "4"}]
    pd.DataFrame({"messages": [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]]}) \
        .to_parquet(tmp_path / "chat.parquet")
    assert load_chat_rows(str(tmp_path / "chat.parquet"))[0]["messages"][1]["content"] == "Hello"


# --- refusals, each naming the row as the file shows it -----------------------------------------------------

@pytest.mark.parametrize("text, columns, expected", [
    (REVIEWS, ColumnMap("Classify: {txt}", {"answer_column": "label"}),
     "reviews.csv has no column 'txt' (prompt_template names it); nearest: 'text'; its columns: text, label."),
    (REVIEWS, ColumnMap("Classify: {text}", {"answer_column": "Label"}),
     "has no column 'Label' (answer_column names it); nearest: 'label'"),
    ("text,label\nGood,positive\nBad,\n", MAP,
     "reviews.csv row 3 (the header is row 1): the 'label' cell (answer_column) is empty"),
    ("text,label\nGood,positive\n\n  ,negative\n", MAP,
     "reviews.csv row 4 (the header is row 1): the column prompt_template names (text) is empty"),
    ('text,label\n"two\nlines",positive\nBad,  \n', MAP, "reviews.csv row 3 (the header is row 1)"),
    ("text,label\n", MAP, "reviews.csv has no rows"),
    (REVIEWS, None, ("reviews.csv has the columns text, label and no messages, conversations or instruction/output "
                     "column(s): set prompt_template (the user turn, e.g. 'Classify this review: {text}') and "
                     "answer_column")),
    ("text,text\na,b\n", MAP, "the column name 'text' is there twice"),
    ("text,\na,b\n", MAP, "column 2 has no name"),
])
def test_csv_problems_are_refused_in_one_line_naming_the_spreadsheet_row(tmp_path, text, columns, expected):
    path = write(tmp_path, "reviews.csv", text)
    with pytest.raises(DatasetError) as error:
        load_chat_rows(path, columns=columns)
    assert expected in str(error.value) and "\n" not in str(error.value).strip("\n")


def test_parquet_rows_count_from_one_and_jsonl_keeps_its_line_numbers(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", None, "z"]}).to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DatasetError, match=r"r\.parquet row 2 \(counting rows from 1\): the 'label' cell"):
        load_chat_rows(str(tmp_path / "r.parquet"), columns=MAP)
    path = write(tmp_path, "r.jsonl", '{"text": "a", "label": "x"}\n\n{"txt": "b", "label": "y"}\n')
    with pytest.raises(DatasetError, match=r"r\.jsonl line 3: no column 'text' \(prompt_template names it\); "
                                           "nearest: 'txt'"):
        load_chat_rows(path, columns=MAP)


@pytest.mark.parametrize("name, expected", [
    ("data.xlsx", "Excel workbook: save it as CSV"),
    ("notes.txt", "plain text, with no columns"),
    ("params.yaml", "loralab does not read as data"),
    ("data.feather", "does not know how to read (suffix '.feather')"),
])
def test_files_loralab_does_not_read_are_refused_saying_what_to_give(tmp_path, name, expected):
    path = write(tmp_path, name, "x")
    with pytest.raises(DatasetError, match=re.escape(expected)):
        load_chat_rows(path, columns=MAP)


# --- held-out rows and preference pairs use the same map --------------------------------------------------

def test_held_out_rows_are_mapped_as_the_training_rows_are(tmp_path):
    train = write(tmp_path, "train.csv", "question,reply\nWhat is 2+2?,4\nCapital of France?,Paris\nRed?,A colour\n")
    pd.DataFrame({"question": ["Capital of Italy?", "What is 2+2?"], "reply": ["Rome", "4"]}) \
        .to_parquet(tmp_path / "held.parquet")
    cfg = validate_params(own(dataset=train, eval_dataset=str(tmp_path / "held.parquet"), prompt_template="Q: {question}",
                              answer_column="reply", system_prompt="Be brief.", eval_scorers=["exact_match"]))
    splits = load_splits(cfg)
    assert len(splits.train) == 3 and len(splits.leaked) == 1, "the row in both files is removed from held-out"
    assert splits.eval[0]["messages"] == [{"role": "system", "content": "Be brief."},
                                          {"role": "user", "content": "Q: Capital of Italy?"},
                                          {"role": "assistant", "content": "Rome"}]
    assert splits.source == str(tmp_path / "held.parquet")


@pytest.mark.parametrize("method", ["dpo", "kto"])
def test_preference_pairs_from_a_csv_with_a_column_map(tmp_path, method):
    path = write(tmp_path, "prefs.csv", "q,good,bad\nWhat is 2+2?,The answer is 4.,\"Well, maybe 4.\"\n")
    columns = ColumnMap("{q}", {"chosen_column": "good", "rejected_column": "bad"})
    rows = load_preference_rows(path, "train", method, columns)
    if method == "dpo":
        assert rows == [{"prompt": [{"role": "user", "content": "What is 2+2?"}],
                         "chosen": [{"role": "assistant", "content": "The answer is 4."}],
                         "rejected": [{"role": "assistant", "content": "Well, maybe 4."}]}]
    else:
        assert [r["label"] for r in rows] == [True, False]
    write(tmp_path, "same.csv", "q,good,bad\nHi,Hello,Hello\n")
    with pytest.raises(DatasetError, match=r"same\.csv row 2 \(the header is row 1\): chosen and rejected are the "
                                           "same reply"):
        load_preference_rows(str(tmp_path / "same.csv"), "train", method, columns)
    with pytest.raises(DatasetError, match="prefs.csv has the columns q, good, bad .* set prompt_template .* "
                                           "chosen_column and rejected_column"):
        load_preference_rows(path, "train", method)


# --- loralab run --check: the same checks before any kernel -------------------------------------------------

@pytest.fixture
def no_kernel(monkeypatch, tmp_path):
    from loralab.runs import runner

    monkeypatch.setattr(runner, "_execute", lambda *a, **k: pytest.fail("the kernel was started"))
    monkeypatch.chdir(tmp_path)


def test_check_reads_and_maps_every_row_of_a_csv(no_kernel, tmp_path, capsys):
    from loralab.cli import main

    write(tmp_path, "reviews.csv", REVIEWS)
    code = main(["run", NB01, "-f", SMOKE, "-p", "dataset", "reviews.csv", "-p", "eval_dataset", "", "-p",
                 "eval_scorers", "[]", "-p", "prompt_template", "Classify this review: {text}", "-p",
                 "answer_column", "label", "--check"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "every row of" in out and "reviews.csv read and checked, each mapped by prompt_template " \
        "'Classify this review: {text}' and answer_column 'label'" in out


@pytest.mark.parametrize("notebook, params, expected", [
    (NB01, ["-p", "prompt_template", "Classify: {txt}", "-p", "answer_column", "label"], "nearest: 'text'"),
    (NB01, ["-p", "prompt_template", "Classify: {text}", "-p", "answer_column", "labels"], "nearest: 'label'"),
    (NB01, [], "set prompt_template"),
    (NB01, ["-p", "prompt_template", "'Classify: {txt}'", "-p", "answer_column", "label"], "nearest: 'text'"),
    (NB04, ["-p", "prompt_template", "{text}", "-p", "chosen_column", "label", "-p", "rejected_column", "other"],
     "has no column 'other' (rejected_column names it)"),
])
def test_check_refuses_a_bad_column_map_in_one_line(no_kernel, tmp_path, capsys, notebook, params, expected):
    from loralab.cli import main

    write(tmp_path, "reviews.csv", REVIEWS)
    code = main(["run", notebook, "-p", "dataset", "reviews.csv", "-p", "eval_dataset", "", "-p", "eval_scorers",
                 "[]", *params, "--check"])
    out = capsys.readouterr().out
    assert code == 2 and out.startswith("error: ") and len(out.strip().splitlines()) == 1, out
    assert expected in out and "Traceback" not in out


def test_p_keeps_a_template_as_written_and_other_values_as_yaml():
    from loralab.params.yaml_reader import param_value

    assert param_value("prompt_template", "Classify this review: {text}") == "Classify this review: {text}"
    assert param_value("prompt_template", "{text}") == "{text}"
    assert param_value("prompt_template", "'Q: {text}'") == "Q: {text}"  # quoted YAML text: the quotes go
    assert param_value("system_prompt", "Be brief: one line.") == "Be brief: one line."
    assert param_value("eval_scorers", "[contains, chrf]") == ["contains", "chrf"]
    assert param_value("prompt_template", "") == ""
