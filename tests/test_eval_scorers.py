"""Scorers chosen by name: what each gives, and every bad spec refused with what to write."""

from __future__ import annotations

import json

import pytest

from loralab.eval.scorers import (
    NAMES,
    check_on_first_row,
    choice_letter,
    parse_scorer,
    parse_scorers,
    score_replies,
)
from loralab.params.errors import ParamsError

JSON_REF = json.dumps({"topic": "geography", "answer": "Lima"})


def one(spec: str, reply: str, reference: str) -> float:
    return parse_scorer(spec)(reply, reference)


@pytest.mark.parametrize("spec, reply, reference, expected", [
    ("exact_match", "  Paris ", "paris", 1.0),
    ("exact_match", "Paris.", "Paris", 0.0),
    ("contains", "I think the answer is  Lima, Peru", "lima", 1.0),
    ("contains", "Cusco", "Lima", 0.0),
    ("regex:^Answer: [A-Z]", "Answer: Lima", "", 1.0),
    ("regex:^Answer: [A-Z]", "The answer: Lima", "", 0.0),
    ("json_object", '{"a": 1}', "", 1.0),
    ("json_object", "[1, 2]", "", 0.0),
    ("json_object:topic,answer", '{"topic": "x"}', "", 0.0),
    ("json_object:topic,answer", '{"topic": "x", "answer": "y", "extra": 1}', "", 1.0),
    ("choice", "(b) Paris", "B", 1.0),
    ("choice", "The answer is C.", "B", 0.0),
    ("choice", "Paris", "B", 0.0),
    ("rouge_l", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    ("rouge_l", "dogs bark", "the cat sat on the mat", 0.0),
    ("chrf", "the cat sat on the mat", "the cat sat on the mat", 1.0),
    ("json_shape", JSON_REF, JSON_REF, 1.0),
    ("json_shape", '{"topic": "cooking", "answer": "x"}', JSON_REF, 0.0),
    ("json_topic", json.dumps({"topic": "geography", "answer": "Cusco"}), JSON_REF, 1.0),
    ("json_answer", json.dumps({"topic": "math", "answer": "lima"}), JSON_REF, 1.0),
    ("json_answer", json.dumps({"topic": "geography", "answer": "Cusco"}), JSON_REF, 0.0),
])
def test_each_scorer_means_what_its_docstring_says(spec, reply, reference, expected):
    assert one(spec, reply, reference) == pytest.approx(expected)


def test_partial_overlap_scores_between_zero_and_one():
    for spec in ("rouge_l", "chrf"):
        value = one(spec, "the cat sat", "the cat sat on the mat")
        assert 0.2 < value < 1.0, (spec, value)


@pytest.mark.parametrize("text, letter", [
    ("B", "B"), ("b", "B"), ("B.", "B"), ("B) Paris", "B"), ("(d) x", "D"), ("[c]", "C"), ("Answer: d", "D"),
    ("The answer is C.", "C"), ("Apple", None), ("A cat", None), ("I think so", None),
])
def test_choice_letters(text, letter):
    assert choice_letter(text) == letter


@pytest.mark.parametrize("spec, message", [
    ("exact", "Did you mean 'exact_match'"),
    ("rougel", "Did you mean 'rouge_l'"),
    ("regex:(unclosed", "does not compile"),
    ("regex:", "write regex:PATTERN"),
    ("json_shape:x", "takes no argument"),
    ("python:no_such_module_here:check", "cannot import 'no_such_module_here'"),
    ("python:json", "write python:module:function"),
    ("python:json:no_such_function", "has no function 'no_such_function'"),
    ("", "not a scorer name"),
])
def test_bad_specs_are_refused_with_what_to_write(spec, message):
    with pytest.raises(ParamsError, match="eval_scorers") as error:
        parse_scorer(spec)
    assert message in str(error.value)


def test_a_scorer_named_twice_is_refused():
    with pytest.raises(ParamsError, match="twice"):
        parse_scorers(["contains", "contains"])


def test_python_checker_from_a_module_and_from_a_file(tmp_path, monkeypatch):
    (tmp_path / "my_checks.py").write_text(
        "def starts_upper(reply, reference):\n    return float(reply[:1].isupper())\n"
        "def broken(reply, reference):\n    return 1 / 0 if reply == 'boom' else 1.0\n"
        "def out_of_range(reply, reference):\n    return 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    by_module = parse_scorer("python:my_checks:starts_upper")
    by_file = parse_scorer("python:my_checks.py:starts_upper")
    assert by_module("Yes", "") == by_file("Yes", "") == 1.0 and by_module("no", "") == 0.0
    with pytest.raises(ValueError, match=r"not a number in \[0, 1\]"):
        parse_scorer("python:my_checks:out_of_range")("x", "y")


def test_a_checker_that_fails_on_the_first_row_is_refused_before_any_model(tmp_path, monkeypatch):
    (tmp_path / "bad_checks.py").write_text("def check(reply, reference):\n    raise KeyError('score')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    scorers = parse_scorers(["python:bad_checks:check"])
    with pytest.raises(ParamsError, match="fails on the first held-out row.*KeyError"):
        check_on_first_row(scorers, "reference", "the first held-out row")


def test_a_pattern_the_reference_itself_misses_is_refused():
    with pytest.raises(ParamsError, match="gives the reference answer .* a score of 0"):
        check_on_first_row(parse_scorers(["regex:^ANSWER"]), "Answer: Lima", "row 1")
    with pytest.raises(ParamsError, match="json_shape"):
        check_on_first_row(parse_scorers(["json_shape"]), "Lima", "row 1")
    check_on_first_row(parse_scorers(["regex:^Answer", "contains", "rouge_l"]), "Answer: Lima", "row 1")


def test_a_checker_that_raises_on_a_later_row_scores_zero_there_and_is_counted(tmp_path, monkeypatch):
    (tmp_path / "late_checks.py").write_text(
        "def check(reply, reference):\n    if reply == 'boom':\n        raise ValueError('cannot parse')\n"
        "    return 1.0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    scorers = parse_scorers(["python:late_checks:check", "exact_match"])
    table = score_replies(scorers, ["ok", "boom", "ok"], ["ok", "ok", "no"])
    assert table.failures == {"python:late_checks:check": 1, "exact_match": 0}
    assert table.means["python:late_checks:check"] == pytest.approx(2 / 3)
    assert table.means["exact_match"] == pytest.approx(1 / 3)
    assert "ValueError: cannot parse" in table.errors["python:late_checks:check"]


def test_every_documented_name_parses():
    documented = {"exact_match", "contains", "regex", "json_object", "choice", "rouge_l", "chrf", "python",
                  "json_shape", "json_topic", "json_answer", "final_number"}
    assert set(NAMES) == documented


def test_loralab_run_refuses_a_bad_scorer_before_the_kernel_starts(tmp_path, capsys):
    from pathlib import Path

    from loralab.cli import main

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "01_qlora_finetune.ipynb"
    code = main(["run", str(notebook), "-p", "eval_scorers", "[contains, 'regex:(']", "--runs-root", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 2 and "'regex:(': the pattern does not compile" in out and "Traceback" not in out
    assert not list(tmp_path.iterdir()), "nothing is written for refused params"
