"""A second embedded task: the JSON task's questions answered in one line, ``Answer: <answer>``.

    from loralab.data.short_answers import short_answer_rows
    rows = short_answer_rows("train")     # {"messages": [user question, "Answer: Lima"]}, 263 rows (eval: 69)

The base model answers these questions in prose; after training it should answer in the fixed
line and, as far as a 135M model knows the facts, with the right answer. Unlike the JSON shape,
the format alone is easy to learn and the content is hard, so the scorers that fit it measure both:
``regex:^Answer: \\S`` (format), ``contains`` (the reference answer in the reply) and ``chrf``.
Used by the decision-flow sweep (``params/sweeps/decision_flow.yaml``) as ``embedded/short-answers``.
"""

from __future__ import annotations

from loralab.data.json_answers import data_file

PREFIX = "Answer: "


def short_answer_rows(split: str = "train") -> list[dict]:
    """The embedded questions of ``split`` (train or eval) with the reply ``Answer: <answer>``."""
    import json

    rows = []
    for line in data_file(split).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        rows.append({"messages": [row["messages"][0], {"role": "assistant", "content": PREFIX + row["answer"]}]})
    return rows
