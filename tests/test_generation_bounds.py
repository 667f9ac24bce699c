"""Held-out generation within bounds: prompts cut to max_seq_length, batches sized by the KV-cache estimate."""

from __future__ import annotations

import pytest

from conftest import TINY_MODEL
from loralab.plan.architectures import architecture_from_config, get_architecture
from loralab.plan.memory import generation_batch_size, kv_cache_bytes_per_token

GIB = 2**30


def test_kv_cache_per_token_is_layers_x_2_x_kv_dim_x_bytes():
    arch = get_architecture("llama-3.1-8b")  # 32 blocks, 8 KV heads x 128
    assert kv_cache_bytes_per_token(arch, 2) == 32 * 2 * 1024 * 2 == 131_072


@pytest.mark.parametrize(("free_gib", "expected"), [(6.0, range(6, 11)), (60.0, range(32, 33)), (0.05, range(1, 2))])
def test_the_batch_shrinks_with_the_free_memory(free_gib, expected):
    """A 3B model, 2,048-token prompts + 48 new tokens in 16-bit: on a T4 with ~6 GiB left after training a
    batch of 32 (32 x 2,096 tokens x 28 blocks x 2 x 1,024 x 2 B = 7.7 GB of KV cache alone) does not fit;
    an H100 holds it; with almost nothing free one prompt at a time still runs."""
    arch = get_architecture("llama-3.2-3b")
    batch = generation_batch_size(arch, int(free_gib * GIB), 2048, 48, value_bytes=2, most=32)
    assert batch in expected, batch
    cache = batch * 2096 * kv_cache_bytes_per_token(arch, 2)
    assert batch == 1 or cache <= free_gib * GIB / 2


def test_the_architecture_of_a_loaded_model_reads_its_config():
    cfg = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024}
    arch = architecture_from_config(cfg, "tiny")
    assert (arch.layers, arch.kv_dim, arch.vocab) == (2, 32, 1024)
    with pytest.raises(ValueError, match="hidden_size"):
        architecture_from_config({"num_attention_heads": 4}, "broken")


def test_no_room_for_a_prompt_is_refused_in_one_line():
    from loralab.model.generation import prompt_ids

    with pytest.raises(ValueError, match="lower max_new_tokens or raise max_seq_length"):
        prompt_ids(None, [[{"role": "user", "content": "hi"}]], max_seq_length=48, max_new_tokens=48)


@pytest.mark.slow
def test_long_prompts_are_cut_to_max_seq_length(capsys):
    """The tiny random model loaded at max_seq_length 64: a 200-token prompt reaches generate as its last 56
    tokens (64 less 8 new ones), a short one whole; both get a reply."""
    from loralab.model.generation import generate_replies
    from loralab.model.loading import load_model
    from loralab.params.run_config import validate_params

    model, tokenizer = load_model(validate_params({"model_name": TINY_MODEL, "load_in_4bit": False,
                                                   "max_seq_length": 64}))
    seen: list[int] = []
    generate = model.generate

    def recording_generate(**kwargs):
        seen.append(kwargs["input_ids"].shape[1])
        return generate(**kwargs)

    model.generate = recording_generate
    long = [{"role": "user", "content": "Tell me about rivers. " * 40}]
    short = [{"role": "user", "content": "Hi"}]
    replies = generate_replies(model, tokenizer, [long, short], max_new_tokens=8)
    assert len(replies) == 2
    assert seen == [56], seen  # one batch, padded to the cut prompt's length
    assert "1 of 2 prompts were longer than max_seq_length (64) less max_new_tokens (8)" in capsys.readouterr().out
