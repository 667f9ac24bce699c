"""The embedded task's scores for any parity ``TokenModel`` (a GGUF file in llama.cpp, a transformers model).

    from loralab.eval.token_model_scores import embedded_task_scores
    embedded_task_scores(LlamaCppTokenModel("model.Q4_K_M.gguf"), tokenizer, n=20)   # {"json_shape": 0.95, ...}
    export_for_llama_cpp(merged, "gguf", score=embedded_task_scores)                  # a score per exported file

The prompts are the tokenizer's (chat template applied, generation prompt added), the replies greedy
(``TokenModel.greedy``, stopping at the end-of-turn token), scored with ``TASK_SCORERS``.
"""

from __future__ import annotations

from loralab.data.chat_rows import read_jsonl
from loralab.data.json_answers import data_file
from loralab.eval.prepare import reference
from loralab.eval.scorers import parse_scorers, score_replies
from loralab.export.parity import as_token_model, parity_prompts, stop_token_ids

TASK_SCORERS = ("json_shape", "json_topic", "json_answer")


def embedded_task_scores(model, tokenizer, n: int = 20, max_new_tokens: int = 48) -> dict[str, float]:
    """Mean ``TASK_SCORERS`` of greedy answers to the embedded task's first ``n`` held-out questions."""
    rows = read_jsonl(data_file("eval"))[:n]
    runner = as_token_model(model)
    stops = stop_token_ids(tokenizer)
    replies = [tokenizer.decode(runner.greedy(prompt, max_new_tokens, stops), skip_special_tokens=True)
               for prompt in parity_prompts(tokenizer, messages=[row["messages"][:1] for row in rows])]
    return score_replies(parse_scorers(list(TASK_SCORERS)), replies, [reference(row) for row in rows]).means
