"""The embedded preference set: the JSON task's questions, a short correct answer preferred to a rambling one.

    from loralab.data.preference_rows import load_preference_rows
    rows = load_preference_rows("embedded/concise-answers", "train", "dpo")   # 263 pairs (eval: 69)
    # {"prompt": [user question], "chosen": ["The answer is Lima."], "rejected": [a hedging ramble]}

Each question of ``loralab.data.json_answers`` (``data_file("train")`` / ``data_file("eval")``, so the
eval split shares no prompt and no entity or number with train) gets ``chosen`` = ``The answer is
<answer>.`` and ``rejected`` = the same correct answer buried in three or more hedging sentences (30+
words) from a few fixed templates, picked with a fixed seed. Both are correct, so what the model can
learn from the pairs is the style: one short sentence. ``is_one_concise_sentence`` checks a generated
reply for it; the rows are generated on the fly from the shipped JSON Lines files (no file of their own).
KTO gets every pair as two rows (chosen: label true, rejected: label false).
"""

from __future__ import annotations

import json
import random
import re

from loralab.data.json_answers import data_file

SEED = 1234
MAX_WORDS = 15

RAMBLING_TEMPLATES = (
    ("Well, that is an interesting question, and people think about it in different ways. There is a lot to "
     "consider here. If I had to guess, I would say it is probably {answer}, but I am not completely sure."),
    ("Hmm, let me think about this for a moment, because questions like this can be trickier than they look. "
     "I do not want to rush into an answer. After thinking it over, I believe the answer might be {answer}, "
     "although you may want to double-check it somewhere."),
    ("That is a great question! Many people ask something like this, and the answer depends on how you "
     "look at it. Some sources might say one thing and others might say another. Still, my best guess is "
     "{answer}, if I remember correctly."),
    ("Thank you for asking. Before I answer, I should say that I can sometimes make mistakes, so please keep "
     "that in mind. It is always good to be careful with facts. With that said, I think the answer is "
     "{answer}, more or less."),
)

# A sentence ends at . ! or ? (a run such as "..." or "?!" counts as more than one); a point between
# digits (3.5) is a decimal point, not the end of a sentence.
_SENTENCE_END = re.compile(r"[!?]|(?<!\d)\.|\.(?!\d)")


def concise_answer_pairs(split: str) -> list[dict]:
    """Paired rows ``{"prompt", "chosen", "rejected"}`` (plain text) for the embedded questions of ``split``.

    ``split`` is ``train`` or ``eval``; the same split always gives the same rows.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"embedded/concise-answers has the splits 'train' and 'eval', not {split!r}.")
    rng = random.Random(f"{SEED}-{split}")
    pairs = []
    for line in data_file(split).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        answer = row["answer"]
        pairs.append({
            "prompt": row["messages"][0]["content"],
            "chosen": f"The answer is {answer}.",
            "rejected": rng.choice(RAMBLING_TEMPLATES).format(answer=answer),
        })
    return pairs


def is_one_concise_sentence(reply: str) -> bool:
    """True when ``reply`` is one short sentence: 1 to 15 words, with no sentence-ending mark but at the end.

    A sentence-ending mark is ``.``, ``!`` or ``?`` (each one in ``...`` counts; a decimal point does not).
    Surrounding whitespace is ignored; a reply with no final mark is still one sentence. It checks the style
    only: whether the answer is right is for the ``contains`` scorer.
    """
    text = reply.strip()
    words = text.split()
    if not 1 <= len(words) <= MAX_WORDS:
        return False
    ends = [match.start() for match in _SENTENCE_END.finditer(text)]
    return not ends or ends == [len(text) - 1]
