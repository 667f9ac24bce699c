"""Training checkpoints that are whole or absent, and resuming from the newest one.

    from loralab.train.checkpoints import resume_checkpoint, whole_checkpoints, resume_as_trained
    checkpoint = resume_checkpoint(run_dir / "checkpoints", cfg)   # None: start at step 0
    trainer = SFTTrainer(..., callbacks=[whole_checkpoints(cfg.model_dump()), resume_as_trained(checkpoint)])
    trainer.train(resume_from_checkpoint=checkpoint)

Every ``save_steps`` steps the Trainer writes ``checkpoint-N`` (adapter, optimizer, scheduler, RNG states,
``trainer_state.json``); the ``whole_checkpoints`` callback then adds ``loralab_params.json`` (the run's
params), flushes the folder to disk and writes the marker ``loralab_complete.json``. A process killed at any
moment leaves checkpoints that are marked and whole, and at worst one unmarked folder, which the next
``resume_checkpoint`` deletes.

Resuming uses Hugging Face Trainer's own mechanism (transformers 5.x ``Trainer.train(
resume_from_checkpoint=...)``): it reloads the adapter weights, optimizer and scheduler, restores the
Python/NumPy/torch RNG states, and skips the batches already seen. The data order does not depend on
RNG state at all: accelerate's sampler draws epoch ``e``'s permutation from ``data_seed + e``
(``data_seed`` is the run's seed), so the resumed run sees the same batches in the same order.
``resume_as_trained`` puts back what the plain resume changes (precision, token count, a second adapter).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from loralab.params.run_config import RunConfig

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR naming
STAGING_PREFIX = ".staging-"  # folders of the loralab versions that saved aside
PARAMS_NAME = "loralab_params.json"
COMPLETE_MARKER = "loralab_complete.json"  # written by whole_checkpoints once the checkpoint is on disk
# Params that do not change what training computes: a run may resume with other values of these.
NOT_TRAINING_PARAMS = frozenset({"run_dir", "resume", "save_steps", "save_total_limit", "logging_steps",
                                 "eval_scorers", "eval_examples", "max_new_tokens", "show_examples",
                                 "retention_tasks", "retention_limit", "report_to", "completions_every"})


class CheckpointMismatchError(ValueError):
    """The checkpoint in run_dir was trained with other params than the ones given now."""


def checkpoint_step(path: str | Path | None) -> int | None:
    """The step N of a ``checkpoint-N`` folder (None for None)."""
    if path is None:
        return None
    match = CHECKPOINT_RE.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not a checkpoint folder (expected a name like checkpoint-25).")
    return int(match.group(1))


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """``checkpoint-N`` folders under ``output_dir`` marked whole, oldest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir()
             if p.is_dir() and CHECKPOINT_RE.match(p.name) and (p / COMPLETE_MARKER).is_file()]
    return sorted(found, key=checkpoint_step)


def remove_unfinished_saves(output_dir: str | Path) -> list[str]:
    """Delete the checkpoint folders a killed save left unmarked (and older loralab's staging folders)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    leftovers = [p for p in output_dir.iterdir() if p.is_dir() and (
        p.name.startswith(STAGING_PREFIX) or (CHECKPOINT_RE.match(p.name) and not (p / COMPLETE_MARKER).is_file()))]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return sorted(p.name for p in leftovers)


def training_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params that decide what training computes (everything but output, eval and checkpoint knobs)."""
    return {k: v for k, v in params.items() if k not in NOT_TRAINING_PARAMS}


def check_same_training(checkpoint: str | Path, cfg: RunConfig) -> None:
    """Raise CheckpointMismatchError when ``checkpoint`` was trained with other training params than ``cfg``."""
    path = Path(checkpoint) / PARAMS_NAME
    if not path.is_file():
        return  # a checkpoint written by plain transformers: nothing recorded to compare
    saved = training_params(json.loads(path.read_text()))
    now = training_params(cfg.model_dump())
    # A field that an older loralab did not have yet is not compared (it ran with that field's default).
    differences = [f"{k}={saved[k]!r} there, {now[k]!r} now" for k in sorted(set(saved) & set(now))
                   if saved[k] != now[k]]
    if differences:
        raise CheckpointMismatchError(
            f"{checkpoint} was trained with other params ({'; '.join(differences)}). Resume with the same "
            "params, set resume: false to start over in this run_dir (its checkpoints are deleted), or use "
            "another run_dir.")


def resume_checkpoint(output_dir: str | Path, cfg: RunConfig) -> Path | None:
    """The newest complete checkpoint to resume from, or None to start at step 0.

    Removes leftovers of a killed save. With ``cfg.resume`` false, deletes the old checkpoints so that
    a later resume cannot pick up a checkpoint of the discarded run. Raises CheckpointMismatchError if
    the newest checkpoint was trained with different training params.
    """
    output_dir = Path(output_dir)
    removed = remove_unfinished_saves(output_dir)
    if removed:
        print(f"removed {len(removed)} half-written checkpoint(s) of an interrupted run: {', '.join(removed)}")
    checkpoints = complete_checkpoints(output_dir)
    if not cfg.resume:
        for path in checkpoints:
            shutil.rmtree(path)
        if checkpoints:
            print(f"resume is off: deleted {len(checkpoints)} old checkpoint(s) in {output_dir}")
        return None
    if not checkpoints:
        return None
    newest = checkpoints[-1]
    check_same_training(newest, cfg)
    return newest


def _fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` (and the folder) to disk, so the marker never vouches for unwritten data."""
    for path in [*sorted(p for p in folder.rglob("*") if p.is_file()), folder]:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
        except OSError:
            pass  # some file systems (FUSE mounts) do not support fsync on folders
        finally:
            os.close(fd)


def _barrier() -> None:
    """Wait for every training process (DDP); nothing in a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _trainer_callback():
    from transformers import TrainerCallback

    return TrainerCallback


def whole_checkpoints(run_params: dict[str, Any] | None):
    """A trainer callback: each ``checkpoint-N`` the Trainer saved gets the run's params and, once its files are
    on disk, the marker (``COMPLETE_MARKER``) that makes it a checkpoint to resume from.

    ``SFTTrainer(..., callbacks=[whole_checkpoints(cfg.model_dump()), ...])``. The Trainer writes a checkpoint
    file by file; a process killed before the marker leaves a folder that ``resume_checkpoint`` deletes. Under
    DDP every rank has written its part (its RNG state) before rank 0 marks the folder.
    """

    class WholeCheckpoints(_trainer_callback()):
        def on_save(self, args, state, control, **kwargs):
            _barrier()  # every rank's files are written
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if run_params is not None:
                    (folder / PARAMS_NAME).write_text(json.dumps(run_params, indent=1, sort_keys=True, default=str))
                _fsync_tree(folder)
                _write_marker(folder)
            _barrier()

    return WholeCheckpoints()


def _write_marker(folder: Path) -> None:
    """The marker written aside and renamed: present means whole."""
    staged = folder / f".{COMPLETE_MARKER}.tmp"
    staged.write_text(json.dumps({"complete": True}))
    _fsync_tree(staged.parent)
    staged.rename(folder / COMPLETE_MARKER)


def _load_root_adapter(model, checkpoint: Path) -> None:
    """Load the adapter saved at ``checkpoint``'s root into ``model``'s active adapter, if it has others too."""
    peft_config = getattr(model, "peft_config", None)
    weights = checkpoint / "adapter_model.safetensors"
    if not peft_config or len(peft_config) < 2 or not weights.is_file():
        return  # one adapter: transformers has loaded it
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(weights)), adapter_name=model.active_adapters[0])


def _restore_dtypes(model, optimizer, dtypes: dict[str, Any]) -> None:
    """Trainable weights (and their optimizer state) back to the dtype they trained in."""
    for name, param in model.named_parameters():
        if name not in dtypes or param.dtype == dtypes[name]:
            continue
        param.data = param.data.to(dtypes[name])
        state = optimizer.state.get(param, {}) if optimizer is not None else {}
        for key, value in state.items():
            if key != "step" and hasattr(value, "is_floating_point") and value.is_floating_point():
                state[key] = value.to(dtypes[name])


def resume_as_trained(checkpoint: str | Path | None):
    """A trainer callback: a run resumed from ``checkpoint`` continues with the numerics of the first try.

    ``SFTTrainer(..., callbacks=[resume_as_trained(checkpoint), ...])``, then
    ``trainer.train(resume_from_checkpoint=checkpoint)``. What the plain resume changes, measured on the
    Unsloth CPU backend with transformers 5.17, and what this puts back when training begins:

    * PEFT's ``load_adapter`` (the Trainer's resume) upcasts a bf16/fp16 adapter to fp32
      (``autocast_adapter_dtype``), so the resumed run trained in another precision than the first try.
      Every trainable weight, and its optimizer state, goes back to the dtype it had; exact, because the
      checkpoint holds the bf16 values themselves (saved widened to fp32).
    * TRL's token counter (``num_tokens`` in the log) restarts at 0; the logged counts continue from the last
      count in the checkpoint (exact when ``logging_steps`` divides ``save_steps``).
    * A checkpoint of a model with a second adapter (DPO's frozen ``ref`` copy, saved as ``ref/``) is
      reloaded by transformers 5.17 from its subfolders only: the trained adapter at the checkpoint's root
      is skipped. It is loaded into the active adapter here.
    """
    checkpoint = Path(checkpoint) if checkpoint else None

    class ResumeAsTrained(_trainer_callback()):
        def __init__(self) -> None:
            self.dtypes: dict[str, Any] = {}
            self.tokens_before = 0

        def on_init_end(self, args, state, control, model=None, **kwargs):
            if checkpoint is not None and model is not None:
                self.dtypes = {name: p.dtype for name, p in model.named_parameters() if p.requires_grad}

        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
            if checkpoint is None or model is None:
                return
            _load_root_adapter(model, checkpoint)
            _restore_dtypes(model, optimizer, self.dtypes)
            logged = [h["num_tokens"] for h in state.log_history if "num_tokens" in h]
            self.tokens_before = int(logged[-1]) if logged else 0

        def on_log(self, args, state, control, logs=None, **kwargs):
            last = state.log_history[-1] if state.log_history else {}
            if self.tokens_before and "num_tokens" in last and "loss" in last:
                last["num_tokens"] += self.tokens_before

    return ResumeAsTrained()
