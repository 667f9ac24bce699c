"""Greedy answers for a list of chat prompts, batched, for evaluation and side-by-side views.

    from loralab.model.generation import generate_replies
    replies = generate_replies(model, tokenizer, [row["messages"][:-1] for row in rows], max_new_tokens=48)

A prompt longer than the model's ``max_seq_length`` less ``max_new_tokens`` loses its start (the question's
end and the reply's opening stay). On an accelerator, a batch holds no more prompts than the planner's
KV-cache estimate lets fit in half the free memory (``loralab.plan.memory.generation_batch_size``).
"""

from __future__ import annotations

from loralab.model.loading import for_inference, for_training
from loralab.plan.architectures import architecture_from_config
from loralab.plan.memory import generation_batch_size


def prompt_ids(tokenizer, prompts: list[list[dict]], max_seq_length: int | None,
               max_new_tokens: int) -> tuple[list[list[int]], int]:
    """Each chat prompt's token ids with the generation prompt, cut from the start to leave room for
    ``max_new_tokens`` within ``max_seq_length`` (None: no cut); and how many were cut."""
    room = None if max_seq_length is None else max_seq_length - max_new_tokens
    if room is not None and room < 1:
        raise ValueError(f"max_new_tokens ({max_new_tokens}) leaves no room for a prompt within max_seq_length "
                         f"({max_seq_length}): lower max_new_tokens or raise max_seq_length.")
    ids = [tokenizer.apply_chat_template(p, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
           for p in prompts]
    cut = sum(room is not None and len(x) > room for x in ids)
    return ([x[-room:] if room is not None else x for x in ids]), cut


def batch_that_fits(model, prompt_tokens: int, max_new_tokens: int, most: int) -> int:
    """``most`` on a CPU; on a CUDA device, at most what ``generation_batch_size`` allows in its free memory."""
    import torch

    device = model.device
    if device.type != "cuda":
        return most
    free, _total = torch.cuda.mem_get_info(device)
    arch = architecture_from_config(model.config.to_dict(), "the loaded model")
    return generation_batch_size(arch, free, prompt_tokens, max_new_tokens, model.dtype.itemsize, most)


def generate_replies(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int = 48,
                     batch_size: int = 32, max_seq_length: int | None = None) -> list[str]:
    """Greedy-decode one reply per chat prompt; the model is back in training mode afterwards.

    ``max_seq_length``: the longest prompt + reply (None: the model's own, as Unsloth set it when loading)."""
    import torch

    limit = max_seq_length or getattr(model, "max_seq_length", None)
    ids, cut = prompt_ids(tokenizer, prompts, limit, max_new_tokens)
    if cut:
        print(f"{cut} of {len(ids)} prompts were longer than max_seq_length ({limit}) less max_new_tokens "
              f"({max_new_tokens}): their start was cut")
    if ids:
        batch_size = batch_that_fits(model, max(map(len, ids)), max_new_tokens, batch_size)
    for_inference(model)
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    replies: list[str] = []
    try:
        for start in range(0, len(ids), batch_size):
            batch = tokenizer.pad({"input_ids": ids[start:start + batch_size]}, return_tensors="pt").to(model.device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
            new_tokens = out[:, batch["input_ids"].shape[1]:]
            replies.extend(t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = old_side
        for_training(model)
    return replies
