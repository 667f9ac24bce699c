"""Greedy answers for a list of chat prompts, batched, for evaluation and side-by-side views.

    from loralab.model.generation import generate_replies
    replies = generate_replies(model, tokenizer, [row["messages"][:-1] for row in rows], max_new_tokens=48)
"""

from __future__ import annotations

from loralab.model.loading import for_inference, for_training


def generate_replies(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 48,
                     batch_size: int = 32) -> list[str]:
    """Greedy-decode one reply per chat prompt; the model is back in training mode afterwards."""
    import torch

    for_inference(model)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    replies: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
                     for p in prompts[start:start + batch_size]]
            batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            new_tokens = out[:, batch["input_ids"].shape[1]:]
            replies.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = old_side
        for_training(model)
    return replies
