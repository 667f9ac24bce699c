"""The held-out preference scores read each answer's log-probabilities right (the tiny random model, a moved adapter).

``answer_logps`` computes logits only at the positions that predict an answer token, for a padded batch
whose rows have prompts of different lengths; the sums must equal the plain computation (every position's
logits, one unpadded row at a time).
"""

from __future__ import annotations

import pytest

from conftest import TINY_MODEL

pytestmark = pytest.mark.slow

QUESTIONS = ["What is the capital of France?", "Name a primary colour.",
             "In one word: which planet do we live on, and what is it mostly covered with?"]
ANSWERS = ["The answer is Paris.", "Well, there are several, but if I had to pick one I would say that red is one.",
           "Earth."]


def test_answer_log_probs_match_the_plain_computation():
    import torch

    from loralab.eval.preference import answer_logps
    from loralab.model.loading import attach_lora, load_model
    from loralab.params.run_config import validate_params

    cfg = validate_params({"model_name": TINY_MODEL, "load_in_4bit": False, "lora_r": 4, "lora_alpha": 8})
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    torch.manual_seed(0)
    with torch.no_grad():  # move the adapter away from B = 0, so that it changes the logits
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.5)
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    answers = [[{"role": "assistant", "content": a}] for a in ANSWERS]

    expected = []
    model.eval()
    for prompt, answer in zip(prompts, answers):
        prompt_len = len(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)["input_ids"])
        ids = torch.tensor([tokenizer.apply_chat_template(prompt + answer, tokenize=True)["input_ids"]])
        with torch.no_grad():
            logps = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)
        expected.append(sum(logps[0, pos, ids[0, pos + 1]].item() for pos in range(prompt_len - 1, ids.shape[1] - 1)))

    got = answer_logps(model, tokenizer, prompts, answers, batch_size=3)  # one padded batch, three prompt lengths
    assert got == pytest.approx(expected, abs=1e-3, rel=1e-5)
    assert len({round(x, 3) for x in got}) == 3 and all(x < 0 for x in got)
    assert answer_logps(model, tokenizer, prompts[:1], answers[:1]) == pytest.approx(got[:1], abs=1e-4)

    class WithoutLogitsToKeep(torch.nn.Module):
        """A model whose forward takes no logits_to_keep (as some remote-code models): every position comes back."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        @property
        def device(self):
            return self.inner.device

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)

    plain = WithoutLogitsToKeep(model)
    assert answer_logps(plain, tokenizer, prompts, answers, batch_size=3) == pytest.approx(got, abs=1e-4)
