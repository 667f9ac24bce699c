"""Padding-free and packed batches (``packing``) train the same thing as padded ones (tiny random model).

The same rows, of different lengths (the embedded JSON-answer and short-answer tasks mixed), go through
TRL's own dataset preparation and collator in each layout. One batch of all of them must give the same
per-token loss padded, padding-free and packed (no attention across rows; tolerance 1e-4 in fp32, where
the difference is summation order), with the same completion tokens counted (completion-only masking
survives packing); padding-free training steps must follow padded ones; and packing must be refused
where the attention does not keep rows apart.
"""

from __future__ import annotations

import pytest

from conftest import TINY_MODEL

pytestmark = pytest.mark.slow

PARAMS = {"model_name": TINY_MODEL, "load_in_4bit": True, "max_seq_length": 128, "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
          "max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 0,
          "save_steps": 0, "use_gradient_checkpointing": False}


@pytest.fixture(scope="module")
def model_and_rows():
    from loralab.data.json_answers import build_splits
    from loralab.data.short_answers import short_answer_rows
    from loralab.model.loading import attach_lora, load_model
    from loralab.params.run_config import validate_params

    cfg = validate_params(PARAMS)
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    rows = [row for pair in zip(build_splits()["train"][:6], short_answer_rows("train")[:6]) for row in pair]
    return model, tokenizer, rows


def _trainer(model_and_rows, tmp_path, packing: str, **extra):
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.params.run_config import validate_params
    from loralab.train.trainer import build_trainer

    model, tokenizer, rows = model_and_rows
    cfg = validate_params(PARAMS | {"packing": packing} | extra)
    return build_trainer(model, tokenizer, to_prompt_completion(rows), cfg, output_dir=tmp_path / packing)


def _whole_dataset_loss(trainer) -> tuple[float, int, int]:
    """(mean loss per completion token, completion tokens, tokens fed) for one batch of every prepared example."""
    import torch

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    trained_tokens = int((batch["labels"][:, 1:] != -100).sum())
    trainer.model.eval()
    with torch.no_grad():
        loss = trainer.model(**batch).loss
    trainer.model.train()
    return float(loss), trained_tokens, batch["input_ids"].numel()


def test_padded_padding_free_and_packed_batches_give_the_same_loss(model_and_rows, tmp_path):
    padded = _whole_dataset_loss(_trainer(model_and_rows, tmp_path, "none"))
    flat = _whole_dataset_loss(_trainer(model_and_rows, tmp_path, "padding_free"))
    packed_trainer = _trainer(model_and_rows, tmp_path, "packed")
    packed = _whole_dataset_loss(packed_trainer)
    assert len(packed_trainer.train_dataset) < 12, "rows were packed into fewer sequences"
    assert flat[1] == padded[1] == packed[1] > 12, "the same completion tokens carry the loss"
    assert flat[2] < padded[2], "padding-free feeds no pad tokens"
    assert abs(flat[0] - padded[0]) < 1e-4 and abs(packed[0] - padded[0]) < 1e-4, (padded, flat, packed)


def test_the_held_out_loss_of_a_flattened_batch_ignores_a_generation_cache(model_and_rows, tmp_path):
    """After generating (use_cache on), the trainer's loss on a padding-free batch still keeps rows apart.

    transformers' sdpa mixes the rows of a flattened batch when the cache is on; loralab's row attention
    cuts them from the position ids whatever the cache, and TRL's own ``compute_loss`` runs without a cache.
    """
    import torch

    from loralab.model.row_attention import NAME, use_row_attention, use_sdpa

    model = model_and_rows[0]
    trainer = _trainer(model_and_rows, tmp_path, "padding_free")
    assert model.config._attn_implementation == NAME  # the trainer factory switched the CPU model's sdpa
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    padded = _whole_dataset_loss(_trainer(model_and_rows, tmp_path, "none"))[0]
    previous, model.config.use_cache = model.config.use_cache, True
    try:
        model.eval()
        with torch.no_grad():
            rows = float(model(**batch).loss)  # row attention, cache on
            kept = float(trainer.compute_loss(model, dict(batch)))  # (it sets use_cache in the dict it gets)
            use_sdpa(model)
            mixed = float(model(**batch).loss)  # what transformers' sdpa computes with the cache on
            kept_sdpa = float(trainer.compute_loss(model, dict(batch)))
    finally:
        use_row_attention(model)
        model.config.use_cache = previous
        model.train()
    assert abs(kept - padded) < 1e-4 and abs(rows - padded) < 1e-4, (padded, kept, rows)
    assert abs(kept_sdpa - padded) < 1e-4 and abs(mixed - padded) > 1e-2, (padded, kept_sdpa, mixed)


def test_row_attention_gives_the_block_masked_logits_and_the_same_generation(model_and_rows, tmp_path):
    """Row by row (the default on CPU) = transformers' block-diagonal mask on a flattened batch; generation unchanged."""
    import torch

    from loralab.model.row_attention import NAME, use_row_attention, use_sdpa

    model, tokenizer, rows = model_and_rows
    trainer = _trainer(model_and_rows, tmp_path, "padding_free")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    assert int((batch["position_ids"][0] == 0).sum()) == len(rows)
    prompts = [tokenizer.apply_chat_template(row["messages"][:-1], tokenize=False, add_generation_prompt=True)
               for row in rows[:3]]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    tokenizer.padding_side = side
    model.eval()
    try:
        with torch.no_grad():
            outputs = {}
            for name in ("rows", "sdpa"):
                (use_row_attention if name == "rows" else use_sdpa)(model)
                logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
                generated = model.generate(**encoded, max_new_tokens=8, do_sample=False,
                                           pad_token_id=tokenizer.pad_token_id)
                outputs[name] = (logits, generated)
    finally:
        use_row_attention(model)
        model.train()
    assert model.config._attn_implementation == NAME
    scale = outputs["sdpa"][0].abs().max()
    assert float((outputs["rows"][0] - outputs["sdpa"][0]).abs().max() / scale) < 1e-4
    assert torch.equal(outputs["rows"][1], outputs["sdpa"][1])


def test_the_loss_counts_completion_tokens_only_in_every_layout(model_and_rows, tmp_path):
    tokenizer = model_and_rows[1]
    for packing in ("none", "padding_free", "packed"):
        trainer = _trainer(model_and_rows, tmp_path, packing)
        example = trainer.train_dataset[0]
        trained = [label != -100 for label in example["labels"]]
        assert 0 < sum(trained) < len(trained), packing  # prompts masked, answers trained
        answers = tokenizer.decode([t for t, keep in zip(example["input_ids"], trained) if keep])
        assert "user" not in answers and "<|im_start|>system" not in answers, (packing, answers)
        batch = trainer.data_collator([example])
        assert int((batch["labels"] != -100).sum()) <= sum(trained), packing


def test_padding_free_training_follows_padded_training(model_and_rows, tmp_path):
    model = model_and_rows[0]
    start = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
    losses = {}
    for packing in ("none", "padding_free"):
        for name, p in model.named_parameters():
            if name in start:
                p.data.copy_(start[name])
        trainer = _trainer(model_and_rows, tmp_path, packing)
        trainer.train()
        losses[packing] = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses["none"]) == 3
    assert max(abs(a - b) for a, b in zip(losses["none"], losses["padding_free"])) < 1e-4, losses


def test_packing_is_refused_where_attention_would_mix_the_rows(model_and_rows, tmp_path):
    from loralab.train.packing import PackingError, check_rows_kept_apart, rows_apart_difference

    model, tokenizer, _ = model_and_rows
    assert rows_apart_difference(model, tokenizer) < 1e-3  # transformers' SDPA reads the position ids
    previous, model.config.use_cache = model.config.use_cache, True  # as after for_inference (generation)
    try:
        assert rows_apart_difference(model, tokenizer) < 1e-3  # the check runs the training forward
    finally:
        model.config.use_cache = previous

    class IgnoresPositions:
        """The model as an attention that ignores position ids would compute it: rows see each other."""

        config = model.config
        training = False

        def parameters(self):
            return model.parameters()

        def eval(self):
            pass

        def train(self, mode=True):
            pass

        def __call__(self, input_ids, position_ids=None, use_cache=None):
            return model(input_ids=input_ids, use_cache=use_cache)

    with pytest.raises(PackingError, match="packing: padding_free needs attention that keeps the rows"):
        check_rows_kept_apart(IgnoresPositions(), tokenizer, "padding_free")
    check_rows_kept_apart(IgnoresPositions(), tokenizer, "none")  # nothing to check without packing


def test_the_trainer_tokenizes_in_its_own_process_on_a_cpu(model_and_rows, tmp_path, monkeypatch):
    """No worker pool (datasets >= 4.1 starts one for any dataset_num_proc >= 1: seconds per trainer)."""
    import multiprocess.pool

    pools = []
    real_init = multiprocess.pool.Pool.__init__
    monkeypatch.setattr(multiprocess.pool.Pool, "__init__",
                        lambda self, *args, **kwargs: pools.append(args) or real_init(self, *args, **kwargs))
    trainer = _trainer(model_and_rows, tmp_path, "padding_free")
    assert len(trainer.train_dataset) == 12
    assert pools == []
