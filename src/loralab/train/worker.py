"""One data-parallel training process, started by torchrun (``loralab.train.workers`` builds the command).

    python -m torch.distributed.run --nproc-per-node 2 ... -m loralab.train.worker JOB.json

``JOB.json`` holds the run's validated params (the notebook's own config, not a second copy of the
parameters), the checkpoint folder, the checkpoint to resume from and where rank 0 leaves the trained
adapter and the trainer's state for the notebook. Every rank loads the same base, attaches the same
LoRA (same seed) and reads the same training rows; the trainer (DDP: gloo on CPUs, NCCL on GPUs)
gives each rank its own shard of every global batch. Only rank 0 writes: checkpoints (the Trainer's
rule) and the result folder.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RESULT_ADAPTER = "adapter"
RESULT_STATE = "trainer_state.json"
RESULT_METRICS = "train_result.json"


def _threads_per_worker() -> int:
    """This rank's share of the machine's cores (torchrun sets OMP_NUM_THREADS=1 unless told)."""
    from loralab.params.runtime_check import usable_cores

    return max(1, usable_cores() // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def strategy_environment(cfg) -> dict[str, str]:
    """What Unsloth reads at load time under FSDP2: UNSLOTH_FSDP2=1 makes it store a 4-bit base's packed
    NF4 bytes in the compute dtype (``bnb_4bit_quant_storage``; FSDP2 cannot shard uint8 storage) and keep
    its LoRA kernels FSDP2-aware. Nothing for DDP."""
    return {"UNSLOTH_FSDP2": "1"} if cfg.parallel_strategy == "fsdp" else {}


@contextmanager
def optimizer_loads_to_cpu(trainer) -> Iterator[None]:
    """On CPUs under DDP, a resumed worker's optimizer state loads to ``cpu``.

    transformers 5.17's ``Trainer._load_optimizer_and_scheduler`` loads it with ``map_location=args.device``
    when ``world_size > 1``; on a CPU that device is ``cpu:0``, a location torch.load cannot restore to.
    This wraps that method on this one trainer, in the worker's own process, for the length of ``train`` (the one
    place loralab steps into a private method; ``tests/test_data_parallel.py`` fails when that line changes).
    """
    if trainer.args.world_size <= 1 or trainer.args.device.type != "cpu":
        yield
        return
    import torch

    original = trainer._load_optimizer_and_scheduler

    def load_to_cpu(checkpoint):
        if not checkpoint:
            return original(checkpoint)
        load = torch.load

        def to_cpu(*args, **kwargs):
            if str(kwargs.get("map_location", "")).startswith("cpu"):
                kwargs["map_location"] = "cpu"
            return load(*args, **kwargs)

        torch.load = to_cpu
        try:
            return original(checkpoint)
        finally:
            torch.load = load

    trainer._load_optimizer_and_scheduler = load_to_cpu
    try:
        yield
    finally:
        del trainer._load_optimizer_and_scheduler


def run_worker(job_path: str | Path) -> None:
    """Train this rank's part of the run described in ``job_path``."""
    import torch
    import unsloth  # noqa: F401  (before transformers/TRL/PEFT, which it patches; load_model would import it)

    from loralab.data.chat_rows import to_prompt_completion
    from loralab.data.heldout import load_splits
    from loralab.data.row_lengths import fit_rows_to_length
    from loralab.data.supervision import check_supervision
    from loralab.model.loading import attach_lora, load_model
    from loralab.params.run_config import RunConfig
    from loralab.train.trainer import build_trainer

    if not torch.cuda.is_available():
        torch.set_num_threads(_threads_per_worker())
    job = json.loads(Path(job_path).read_text())

    cfg = RunConfig(**job["params"])
    os.environ.update(strategy_environment(cfg))
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    rows, _ = fit_rows_to_length(load_splits(cfg).train, tokenizer, cfg.max_seq_length, cfg.overlong_rows)
    rows, _ = check_supervision(rows, tokenizer, cfg.max_seq_length)  # the rows the notebook kept, in its order
    trainer = build_trainer(model, tokenizer, to_prompt_completion(rows), cfg, output_dir=job["checkpoints"],
                            checkpoint=job.get("checkpoint"))
    with optimizer_loads_to_cpu(trainer):
        result = trainer.train(resume_from_checkpoint=job.get("checkpoint"))
    if trainer.is_world_process_zero() and job.get("result_dir"):
        out = Path(job["result_dir"])
        trainer.model.save_pretrained(str(out / RESULT_ADAPTER))
        trainer.state.save_to_json(str(out / RESULT_STATE))
        (out / RESULT_METRICS).write_text(json.dumps({"global_step": result.global_step,
                                                      "training_loss": result.training_loss,
                                                      "metrics": result.metrics}))


if __name__ == "__main__":
    run_worker(sys.argv[1])
