"""Scorers of generated replies, chosen by name in the params: each gives a reply a number in [0, 1].

    from loralab.eval.scorers import parse_scorers, score_replies
    scorers = parse_scorers(["contains", "regex:^Answer: ", "rouge_l"])     # ParamsError for a bad name or pattern
    table = score_replies(scorers, replies, references)                      # table.means {"contains": 0.8, ...}

A spec is ``name`` or ``name:argument``. The reference is the held-out row's last assistant turn:

=====================  ====================================================================================
``exact_match``        1.0: the reply equals the reference (case, surrounding and repeated spaces ignored)
``contains``           1.0: the reference's text appears inside the reply (same normalisation)
``regex:PATTERN``      1.0: the reply matches PATTERN (Python ``re.search``; anchor it with ^...$ for a format)
``json_object[:k,..]`` 1.0: the reply parses as one JSON object (holding the keys k, ... when given)
``choice``             1.0: the reply's multiple-choice letter (A, (b), "Answer: C") is the reference's letter
``rouge_l``            ROUGE-L F-measure against the reference (Google's ``rouge-score``); 1.0: same words
``chrf``               chrF (``sacrebleu``) / 100; 1.0: the same character n-grams as the reference
``json_shape``         1.0: the embedded task's shape, one object {"topic": <known topic>, "answer": <text>}
``json_topic``         1.0: that shape with the reference's topic
``json_answer``        1.0: that shape with the reference's answer (case ignored)
``final_number``       1.0: the reply's last number equals the reference's final answer (the number after
                       ``####`` as in GSM8K, else its last number; commas and a trailing ``.0`` ignored)
``python:MOD:FUNC``    your checker ``FUNC(reply, reference) -> float`` in [0, 1], from module ``MOD`` (or a
                       ``path/to/file.py``), imported from where the notebook runs
=====================  ====================================================================================

A checker that raises (or returns something outside [0, 1]) on a row scores 0 there and is
counted in ``failures``; it is refused before any model loads when it fails on the first row.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loralab.eval.json_shape import parse_reply
from loralab.params.errors import ParamsError

ScoreFn = Callable[[str, str], float]
# "B", "b", "B.", "B) Paris", "(B)", "[b]": a letter A-J alone, bracketed, or followed by . ) : or ,
_CHOICE_START = re.compile(r"^\s*(?:[\(\[]([A-Ja-j])[\)\]]|([A-Ja-j])(?:$|[\.\):,]))")
_CHOICE_SAID = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*[\(\[]?([A-Za-z])\b", re.IGNORECASE)


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def exact_match(reply: str, reference: str) -> float:
    """1.0 when the reply equals the reference, ignoring case and surrounding or repeated whitespace."""
    return float(_normal(reply) == _normal(reference))


def contains(reply: str, reference: str) -> float:
    """1.0 when the reference's text appears inside the reply (case and whitespace ignored)."""
    return float(_normal(reference) in _normal(reply))


def choice_letter(text: str) -> str | None:
    """The multiple-choice letter a text gives: 'B', '(b) Paris', 'B. Paris', 'The answer is C'; else None."""
    stripped = text.strip()
    start = _CHOICE_START.match(stripped)
    if start:
        return (start.group(1) or start.group(2)).upper()
    said = _CHOICE_SAID.search(stripped)
    return said.group(1).upper() if said else None


def choice(reply: str, reference: str) -> float:
    """1.0 when the reply names the same multiple-choice letter as the reference."""
    letter = choice_letter(reply)
    return float(letter is not None and letter == choice_letter(reference))


def rouge_l(reply: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of words, stemmed); 1.0 for the same words in order."""
    return float(_rouge().score(reference, reply)["rougeL"].fmeasure)


def chrf(reply: str, reference: str) -> float:
    """chrF (character n-gram F-score, sacrebleu) divided by 100; 1.0 for the reference's characters."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(reply, [reference]).score) / 100.0


def json_shape(reply: str, reference: str) -> float:
    """1.0 when the reply is one JSON object of the embedded task's shape (topic, answer)."""
    return float(parse_reply(reply) is not None)


def json_topic(reply: str, reference: str) -> float:
    """1.0 when the reply has the embedded task's shape and the reference's topic."""
    got, want = parse_reply(reply), parse_reply(reference)
    return float(got is not None and want is not None and got["topic"] == want["topic"])


def json_answer(reply: str, reference: str) -> float:
    """1.0 when the reply has the embedded task's shape and the reference's answer (case ignored)."""
    got, want = parse_reply(reply), parse_reply(reference)
    return float(got is not None and want is not None
                 and got["answer"].strip().lower() == want["answer"].strip().lower())


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The last number in ``text`` (after ``####`` when there is one), without commas or a zero fraction."""
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    found = _NUMBER.findall(text)
    if not found:
        return None
    number = found[-1].replace(",", "")
    return number.removesuffix(".0")


def final_number(reply: str, reference: str) -> float:
    """1.0 when the reply's last number equals the reference's final answer (GSM8K's ``#### 72``, else its last
    number)."""
    got, want = last_number(reply), last_number(reference)
    return float(got is not None and got == want)


_ROUGE = []


def _rouge():
    if not _ROUGE:
        from rouge_score import rouge_scorer

        _ROUGE.append(rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True))
    return _ROUGE[0]


def _regex(pattern: str) -> ScoreFn:
    compiled = re.compile(pattern)

    def regex(reply: str, reference: str) -> float:
        return float(compiled.search(reply) is not None)

    return regex


def _json_object(keys: list[str]) -> ScoreFn:
    def json_object(reply: str, reference: str) -> float:
        try:
            obj = json.loads(reply.strip())
        except ValueError:
            return 0.0
        return float(isinstance(obj, dict) and all(k in obj for k in keys))

    return json_object


PLAIN: dict[str, ScoreFn] = {"exact_match": exact_match, "contains": contains, "choice": choice,
                             "rouge_l": rouge_l, "chrf": chrf, "json_shape": json_shape,
                             "json_topic": json_topic, "json_answer": json_answer,
                             "final_number": final_number}
WITH_ARGUMENT = {"regex": "regex:PATTERN", "json_object": "json_object or json_object:key1,key2",
                 "python": "python:module:function or python:path/to/file.py:function"}
NAMES = sorted([*PLAIN, *WITH_ARGUMENT])
# Scorers for which the reference answer itself must score 1.0 (a check of the spec on the first row).
_REFERENCE_SCORES_ONE = ("regex", "json_object", "choice", "json_shape", "json_topic", "json_answer",
                         "final_number")


@dataclass(frozen=True)
class Scorer:
    """One scorer as the params name it (``name`` is the spec, e.g. ``regex:^Answer: ``)."""

    name: str
    kind: str
    fn: ScoreFn = field(repr=False, compare=False)

    def __call__(self, reply: str, reference: str) -> float:
        value = self.fn(reply, reference)
        if isinstance(value, bool):
            value = float(value)
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"returned {value!r}, not a number in [0, 1]")
        return float(value)


def _load_checker(target: str, spec: str) -> ScoreFn:
    module_name, _, func_name = target.rpartition(":")
    if not module_name or not func_name:
        raise ParamsError(f"eval_scorers: {spec!r}: write python:module:function (or python:path/to/file.py:function), "
                          "naming a function of (reply, reference) that returns a number in [0, 1].")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no file {path} (relative to {Path.cwd()})")
            loader = importlib.util.spec_from_file_location(f"loralab_checker_{path.stem}", path)
            module = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(module)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))  # the notebook's folder, as in an interactive kernel
            module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001  a checker's own import error is the user's to see, in one line
        raise ParamsError(f"eval_scorers: {spec!r}: cannot import {module_name!r} ({type(error).__name__}: {error}); "
                          "check the module name and that it is importable from where the notebook runs.") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ParamsError(f"eval_scorers: {spec!r}: {module_name!r} has no function {func_name!r}.")
    return fn


def parse_scorer(spec: str) -> Scorer:
    """One scorer from its spec; ParamsError naming the spec and what to write."""
    if not isinstance(spec, str) or not spec.strip():
        raise ParamsError(f"eval_scorers: {spec!r} is not a scorer name; choose from {', '.join(NAMES)}.")
    kind, sep, argument = spec.partition(":")
    kind = kind.strip()
    if kind in PLAIN:
        if sep:
            raise ParamsError(f"eval_scorers: {spec!r}: {kind} takes no argument; write {kind}.")
        return Scorer(spec, kind, PLAIN[kind])
    if kind == "regex":
        if not argument:
            raise ParamsError(f"eval_scorers: {spec!r}: write regex:PATTERN, e.g. 'regex:^Answer: .+'.")
        try:
            return Scorer(spec, kind, _regex(argument))
        except re.error as error:
            raise ParamsError(f"eval_scorers: {spec!r}: the pattern does not compile ({error}); fix it, and quote "
                              "it in YAML ('regex:^Answer: .+').") from None
    if kind == "json_object":
        keys = [k.strip() for k in argument.split(",") if k.strip()]
        return Scorer(spec, kind, _json_object(keys))
    if kind == "python":
        return Scorer(spec, kind, _load_checker(argument.strip(), spec))
    match = difflib.get_close_matches(kind, NAMES, n=1, cutoff=0.5)
    hint = f" Did you mean {match[0]!r}?" if match else ""
    raise ParamsError(f"eval_scorers: unknown scorer {spec!r}.{hint} Scorers: {', '.join(NAMES)} "
                      f"({'; '.join(WITH_ARGUMENT.values())}).")


def parse_scorers(specs: list[str]) -> list[Scorer]:
    """Every scorer of ``eval_scorers``; ParamsError for the first bad one, or a name given twice."""
    scorers = [parse_scorer(spec) for spec in specs]
    names = [s.name for s in scorers]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ParamsError(f"eval_scorers: {twice} given twice; list each scorer once.")
    return scorers


def check_on_first_row(scorers: list[Scorer], reference: str, where: str) -> None:
    """ParamsError when a scorer cannot score the first held-out row, or scores its own reference below 1.

    A user's checker must return a number in [0, 1] for the first row; a pattern, JSON shape or
    choice letter that the reference answer itself does not have is almost always a wrong spec.
    """
    for scorer in scorers:
        try:
            value = scorer(reference, reference)
        except Exception as error:  # noqa: BLE001  the user's checker: report it in one line, before any model loads
            raise ParamsError(f"eval_scorers: {scorer.name!r} fails on {where} ({type(error).__name__}: {error}); "
                              "fix the checker so it returns a number in [0, 1] for (reply, reference).") from None
        if scorer.kind in _REFERENCE_SCORES_ONE and value < 1.0:
            raise ParamsError(f"eval_scorers: {scorer.name!r} gives the reference answer of {where} a score of "
                              f"{value:g}, not 1: the reference ({reference[:80]!r}) does not have what the scorer "
                              "checks. Fix the scorer's argument, or choose scorers that fit your data.")


@dataclass
class ScoreTable:
    """Per-row scores of a list of replies, their means, and how often each scorer failed."""

    names: list[str]
    rows: list[dict[str, float]]
    failures: dict[str, int]
    errors: dict[str, str] = field(default_factory=dict)  # first error message per failing scorer

    @property
    def means(self) -> dict[str, float]:
        """Mean score per scorer over the rows (0.0 with no rows)."""
        n = len(self.rows)
        return {name: (sum(r[name] for r in self.rows) / n if n else 0.0) for name in self.names}


def score_replies(scorers: list[Scorer], replies: list[str], references: list[str]) -> ScoreTable:
    """Score each reply against its reference with every scorer; a scorer that raises on a row scores 0 there."""
    if len(replies) != len(references):
        raise ValueError(f"got {len(replies)} replies for {len(references)} references; they must pair up.")
    failures = {s.name: 0 for s in scorers}
    errors: dict[str, str] = {}
    rows = []
    for reply, reference in zip(replies, references):
        row = {}
        for scorer in scorers:
            try:
                row[scorer.name] = scorer(reply, reference)
            except Exception as error:  # noqa: BLE001  one bad row must not lose the run: counted and reported
                row[scorer.name] = 0.0
                failures[scorer.name] += 1
                errors.setdefault(scorer.name, f"{type(error).__name__}: {error}")
        rows.append(row)
    return ScoreTable([s.name for s in scorers], rows, failures, errors)
