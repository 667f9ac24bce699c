"""Row-by-row attention (``loralab.model.row_attention``) on tiny random transformers models (seconds, no Unsloth).

A padding-free batch run row by row must give each row the logits and the gradients it gets alone; a
padded batch, a generation step and a model the cut does not fit (sliding window, eager attention) must
get transformers' own sdpa. The embedded model's side (training follows padded batches) is in test_packing.
"""

from __future__ import annotations

import pytest
import torch

from loralab.model.row_attention import (
    NAME,
    row_attention_applies,
    row_starts,
    rows_sdpa_mask,
    use_row_attention,
    use_sdpa,
)

LENGTHS = (5, 9, 3, 7)


def _tiny(kind: str = "llama", **extra):
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    shape = {"vocab_size": 101, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
    if kind == "mistral":
        return MistralForCausalLM(MistralConfig(**shape, attn_implementation="sdpa", **extra)).eval()
    attention = extra.pop("attn", "sdpa")
    return LlamaForCausalLM(LlamaConfig(**shape, attn_implementation=attention, **extra)).eval()


def _rows():
    torch.manual_seed(1)
    return [torch.randint(1, 101, (n,)) for n in LENGTHS]


def _flat(rows):
    return torch.cat(rows)[None], torch.cat([torch.arange(len(r)) for r in rows])[None]


def test_row_starts_are_where_position_ids_restart():
    assert row_starts(torch.tensor([0, 1, 2, 0, 1, 0])) == [0, 3, 5, 6]
    assert row_starts(torch.tensor([0, 1, 2, 3])) == [0, 4]
    assert row_starts(torch.tensor([4, 5, 0, 1])) == [0, 2, 4]  # a row cut before it started still counts


def test_a_flattened_batch_gives_each_row_its_own_logits_and_gradients():
    model = _tiny()
    rows = _rows()
    alone_logits, alone_grads = [], torch.zeros_like(model.model.layers[0].self_attn.q_proj.weight)
    for row in rows:
        model.zero_grad()
        out = model(input_ids=row[None], use_cache=False)
        out.logits.sum().backward()
        alone_logits.append(out.logits[0].detach())
        alone_grads += model.model.layers[0].self_attn.q_proj.weight.grad
    assert use_row_attention(model) and model.config._attn_implementation == NAME
    ids, positions = _flat(rows)
    model.zero_grad()
    out = model(input_ids=ids, position_ids=positions, use_cache=True)  # a cache does not mix them either
    out.logits.sum().backward()
    assert torch.allclose(out.logits[0].detach(), torch.cat(alone_logits), atol=1e-5)
    assert torch.allclose(model.model.layers[0].self_attn.q_proj.weight.grad, alone_grads, atol=1e-5)
    use_sdpa(model)
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():  # transformers' own sdpa with the position ids: the same logits, a masked kernel
        masked = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
    assert torch.allclose(masked, torch.cat(alone_logits), atol=1e-5)


def test_padded_batches_and_generation_are_transformers_sdpa():
    model = _tiny()
    rows = _rows()[:2]
    width = max(len(r) for r in rows)
    ids = torch.stack([torch.cat([torch.zeros(width - len(r), dtype=torch.long), r]) for r in rows])
    mask = torch.stack([torch.cat([torch.zeros(width - len(r)), torch.ones(len(r))]) for r in rows]).long()
    with torch.no_grad():
        sdpa_logits = model(input_ids=ids, attention_mask=mask).logits
        sdpa_tokens = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                     pad_token_id=0)
        use_row_attention(model)
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, sdpa_logits)
        assert torch.equal(model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                          pad_token_id=0), sdpa_tokens)


def test_the_mask_is_sdpas_unless_there_is_no_padding_and_no_cache_offset():
    assert rows_sdpa_mask(batch_size=1, q_length=8, kv_length=8, attention_mask=None) is None
    padded = rows_sdpa_mask(batch_size=1, q_length=4, kv_length=4,
                            attention_mask=torch.tensor([[0, 1, 1, 1]], dtype=torch.bool), allow_is_causal_skip=False)
    assert padded.shape == (1, 1, 4, 4) and not bool(padded[0, 0, 3, 0])
    decoding = rows_sdpa_mask(batch_size=1, q_length=1, kv_length=5, q_offset=4, attention_mask=None,
                              allow_is_causal_skip=False)
    assert decoding is not None and decoding.shape[-1] == 5


@pytest.mark.parametrize("kind, extra, reason", [
    ("llama", {"attn": "eager"}, "not sdpa"),
    ("mistral", {"sliding_window": 4}, "sliding attention window"),
])
def test_models_the_cut_does_not_fit_keep_their_attention(kind, extra, reason):
    model = _tiny(kind, **extra)
    before = model.config._attn_implementation
    assert reason in row_attention_applies(model)
    assert not use_row_attention(model) and model.config._attn_implementation == before
