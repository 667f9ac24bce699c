"""Early stopping on the held-out loss, through transformers' own callback, on the tiny random model."""

from __future__ import annotations

import pytest

from conftest import TINY_MODEL

pytestmark = pytest.mark.slow


def test_training_stops_when_the_held_out_loss_stops_falling(tmp_path):
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.data.short_answers import short_answer_rows
    from loralab.model.loading import attach_lora, load_model
    from loralab.params.run_config import validate_params
    from loralab.train.trainer import build_trainer, heldout_loss

    # A learning rate far too high: the held-out loss gets worse from the first evaluations on.
    cfg = validate_params({"model_name": TINY_MODEL, "load_in_4bit": False, "max_seq_length": 64, "lora_r": 4, "lora_alpha": 8,
                           "target_modules": "attention", "max_steps": 30, "per_device_train_batch_size": 2,
                           "learning_rate": 0.5, "warmup_steps": 0, "save_steps": 0, "eval_steps": 1,
                           "early_stopping_patience": 2, "use_gradient_checkpointing": False,
                           "dataset": "embedded/short-answers", "eval_dataset": "embedded/short-answers",
                           "eval_scorers": []})
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    train = to_prompt_completion(short_answer_rows("train")[:40])
    held_out = to_prompt_completion(short_answer_rows("eval")[:6])
    trainer = build_trainer(model, tokenizer, train, cfg, output_dir=tmp_path, eval_dataset=held_out)
    before = heldout_loss(trainer)["eval_loss"]
    trainer.train()
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    assert trainer.state.global_step < cfg.max_steps, "early stopping ended the run"
    assert len(evals) == trainer.state.global_step
    best = min(evals)
    assert evals[-1] > best and evals[-2] > best, "stopped after 2 evaluations without a new best"
    assert before > 0 and heldout_loss(trainer)["eval_perplexity"] > 1
