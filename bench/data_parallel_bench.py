"""1 process x all cores against N processes x (cores / N) threads: tokens/s of the same training, as a ratio.

    python bench/data_parallel_bench.py --steps 30          # prints both and the ratio

Both runs train the embedded model (16-bit base, r=8, all linear layers, the JSON task) on the same
global batch (8 rows per step: 1 x 8, or 2 x 4) through loralab's own path (``train_in_workers``: in
process, or under torchrun with DDP over gloo). tokens/s counts the non-padding tokens of every rank
over the trainer's own training time (model loading and process start not included). These machines
are shared and noisy: read the ratio of one invocation, not absolute numbers across days.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("UNSLOTH_CPU_BF16", "0")  # float32 on every CPU: the same numerics as the tests

import unsloth  # noqa: F401  (before transformers / trl / peft)


def train_tokens_per_s(processes: int, steps: int) -> tuple[float, float]:
    """(tokens/s, loss after the last step) of one run with ``processes`` training processes."""
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.data.heldout import load_splits
    from loralab.data.row_lengths import fit_rows_to_length
    from loralab.model import attach_lora, load_model
    from loralab.params.run_config import RunConfig
    from loralab.train.trainer import build_trainer
    from loralab.train.workers import train_in_workers

    cfg = RunConfig(load_in_4bit=False, max_steps=steps, per_device_train_batch_size=8 // processes,
                    num_processes=processes, lora_r=8, lora_alpha=16, lora_dropout=0.0, learning_rate=1e-3,
                    warmup_steps=0, save_steps=0, max_seq_length=128, logging_steps=1)
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    rows, _ = fit_rows_to_length(load_splits(cfg).train, tokenizer, cfg.max_seq_length, cfg.overlong_rows)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = build_trainer(model, tokenizer, to_prompt_completion(rows), cfg, output_dir=scratch)
        result = train_in_workers(trainer, cfg, None, Path(scratch)) if processes > 1 else trainer.train()
    tokens = max(h.get("num_tokens", 0) for h in trainer.state.log_history)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return tokens / result.metrics["train_runtime"], losses[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    one, loss_one = train_tokens_per_s(1, args.steps)
    many, loss_many = train_tokens_per_s(args.processes, args.steps)
    print(f"1 process x {os.cpu_count()} threads: {one:.0f} tokens/s (last loss {loss_one:.4f})")
    print(f"{args.processes} processes x {max(1, (os.cpu_count() or 1) // args.processes)} threads: {many:.0f} "
          f"tokens/s (last loss {loss_many:.4f})")
    print(f"ratio ({args.processes} processes / 1): {many / one:.2f}")


if __name__ == "__main__":
    main()
