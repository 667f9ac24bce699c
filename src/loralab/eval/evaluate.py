"""Before/after evaluation on the held-out split of the embedded JSON task.

    from loralab.eval.evaluate import evaluate
    before = evaluate(model, tokenizer, cfg)     # TaskScore, or None when cfg.eval_task == "none"
    before.shape_score                            # share of answers in the right JSON shape
"""

from __future__ import annotations

from loralab.data.chat_rows import read_jsonl
from loralab.data.json_answers import data_file
from loralab.eval.json_shape import TaskScore, score_replies
from loralab.model.generation import generate_replies
from loralab.params.run_config import RunConfig


def eval_rows(cfg: RunConfig) -> list[dict]:
    """The first ``cfg.eval_examples`` held-out rows (with their expected topic and answer)."""
    return read_jsonl(data_file("eval"))[: cfg.eval_examples]


def evaluate(model, tokenizer, cfg: RunConfig) -> TaskScore | None:
    """Generate greedy answers to the held-out questions and score their shape and content."""
    if cfg.eval_task == "none":
        return None
    rows = eval_rows(cfg)
    replies = generate_replies(model, tokenizer, [row["messages"][:-1] for row in rows], cfg.max_new_tokens)
    return score_replies(replies, rows)
