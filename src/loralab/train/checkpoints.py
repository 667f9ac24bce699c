"""Training checkpoints that are whole or absent, and resuming from the newest one.

    from loralab.train.checkpoints import resume_checkpoint, checkpoint_step
    checkpoint = resume_checkpoint(run_dir / "checkpoints", cfg)   # None: start at step 0
    trainer = build_trainer(model, tokenizer, train_ds, cfg, output_dir=run_dir / "checkpoints")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

Every ``cfg.save_steps`` steps the trainer (``AtomicCheckpoints`` mixed into TRL's ``SFTTrainer`` by
``loralab.train.trainer.build_trainer``) writes ``checkpoint-N`` (adapter, optimizer, scheduler, RNG
states, ``trainer_state.json``, and ``loralab_params.json``: the run's params) into a hidden staging
folder next to it, flushes it to disk, then renames it into place. A process killed at any moment
leaves either the complete ``checkpoint-N`` or none (plus, at worst, a hidden ``.staging-*`` folder
that the next ``resume_checkpoint`` removes).

Resuming uses Hugging Face Trainer's own mechanism (transformers 5.x ``Trainer.train(
resume_from_checkpoint=...)``): it reloads the adapter weights, optimizer and scheduler, restores the
Python/NumPy/torch RNG states, and skips the batches already seen. The data order does not depend on
RNG state at all: accelerate's sampler draws epoch ``e``'s permutation from ``data_seed + e``
(``data_seed`` is the run's seed), so the resumed run sees the same batches in the same order.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from loralab.params.run_config import RunConfig

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR naming
STAGING_PREFIX = ".staging-"
PARAMS_NAME = "loralab_params.json"
COMPLETE_MARKER = "trainer_state.json"  # the Trainer writes it last in a checkpoint
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
    """``checkpoint-N`` folders under ``output_dir`` that hold a trainer state, oldest step first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir()
             if p.is_dir() and CHECKPOINT_RE.match(p.name) and (p / COMPLETE_MARKER).is_file()]
    return sorted(found, key=checkpoint_step)


def remove_unfinished_saves(output_dir: str | Path) -> list[str]:
    """Delete the hidden staging folders a killed checkpoint save left behind; return their names."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    leftovers = [p for p in output_dir.iterdir() if p.is_dir() and p.name.startswith(STAGING_PREFIX)]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in leftovers]


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
        print(f"removed {len(removed)} half-written checkpoint save(s) of an interrupted run: {', '.join(removed)}")
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
    """Flush every file of ``folder`` (and the folder) to disk, so a rename never publishes unwritten data."""
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


class AtomicCheckpoints:
    """Mixin for a transformers ``Trainer``: ``checkpoint-N`` is written aside, then renamed into place.

    ``class MyTrainer(AtomicCheckpoints, SFTTrainer)``; set ``run_params`` (a dict) to record the run's
    params in each checkpoint. With several processes (DDP) each rank writes its own RNG file into one
    staging folder; rank 0 renames it once every rank is done.
    """

    run_params: dict[str, Any] | None = None
    _staging_root: str | None = None

    def _get_output_dir(self, trial) -> str:
        if self._staging_root is not None:
            return self._staging_root
        return super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        if self.args.world_size > 1:
            return self._save_checkpoint_data_parallel(model, trial)
        from transformers.trainer_utils import rotate_checkpoints

        output_dir = Path(super()._get_output_dir(trial))
        output_dir.mkdir(parents=True, exist_ok=True)
        name = f"checkpoint-{self.state.global_step}"
        staging_root = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-", dir=output_dir))
        self._staging_root = str(staging_root)
        try:
            super()._save_checkpoint(model, trial)  # writes staging_root/checkpoint-N
            staged = staging_root / name
            if self.run_params is not None:
                (staged / PARAMS_NAME).write_text(json.dumps(self.run_params, indent=1, sort_keys=True, default=str))
            _fsync_tree(staged)
            final = output_dir / name
            if final.exists():  # the same step saved again: move the old one aside first
                final.rename(staging_root / f"{name}.old")
            staged.rename(final)
        finally:
            self._staging_root = None
            shutil.rmtree(staging_root, ignore_errors=True)
        rotate_checkpoints(output_dir=str(output_dir), save_total_limit=self.args.save_total_limit,
                           best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)

    def _save_checkpoint_data_parallel(self, model, trial) -> None:
        """Several ranks (DDP): every rank writes into one staging folder (each its RNG state), all wait,
        then rank 0 flushes and renames it into place; a worker killed mid-save leaves no checkpoint-N."""
        from transformers.trainer_utils import rotate_checkpoints

        output_dir = Path(super()._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        staging_root = output_dir / f"{STAGING_PREFIX}{name}-ranks"  # the same name on every rank
        if self.args.should_save:
            output_dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(staging_root, ignore_errors=True)
            staging_root.mkdir()
        self.accelerator.wait_for_everyone()
        self._staging_root = str(staging_root)
        try:
            super()._save_checkpoint(model, trial)  # writes staging_root/checkpoint-N, each rank its part
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()  # every rank's files are written
        if self.args.should_save:
            staged = staging_root / name
            if self.run_params is not None:
                (staged / PARAMS_NAME).write_text(json.dumps(self.run_params, indent=1, sort_keys=True, default=str))
            _fsync_tree(staged)
            final = output_dir / name
            if final.exists():
                final.rename(staging_root / f"{name}.old")
            staged.rename(final)
            shutil.rmtree(staging_root, ignore_errors=True)
            rotate_checkpoints(output_dir=str(output_dir), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()


def _load_root_adapter(model, checkpoint: Path) -> None:
    """Load the adapter saved at ``checkpoint``'s root into ``model``'s active adapter, if it has others too."""
    peft_config = getattr(model, "peft_config", None)
    if not peft_config or len(peft_config) < 2 or not (checkpoint / "adapter_config.json").is_file():
        return  # one adapter: transformers has loaded it
    active = model.active_adapters[0]
    model.load_adapter(str(checkpoint), active, is_trainable=True)
    model.set_adapter(active)


class ResumeAsTrained:
    """Mixin for a transformers ``Trainer``: a resumed run continues with the numerics of the first try.

    Two things the plain resume changes, measured on the Unsloth CPU backend with transformers 5.17:

    * PEFT's ``load_adapter`` (which the Trainer calls on resume) upcasts a bf16/fp16 adapter to fp32
      (``autocast_adapter_dtype``), so the resumed run trained in another precision than the first try
      (losses 2e-3 apart after 6 steps). Here every trainable weight goes back to the dtype it had;
      that is exact, because the checkpoint holds the bf16 values themselves (saved widened to fp32).
    * TRL's token counter (``num_tokens`` in the log) restarts at 0; it continues from the last count
      logged in the checkpoint (exact when ``logging_steps`` divides ``save_steps``).
    * Under DDP on a CPU, transformers asks torch.load for the location ``cpu:0``, which it cannot
      restore to: the optimizer state is loaded to ``cpu``.
    * A checkpoint of a model with a second adapter (DPO's frozen ``ref`` copy, saved as ``ref/``) is
      reloaded by transformers 5.17 from its subfolders only: the trained adapter at the checkpoint's
      root is skipped, and the run went on from the untrained adapter (DPO loss back at log 2 on the
      first resumed step). Here the root adapter is loaded into the active adapter as well.
    """

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        """transformers 5.17 loads the optimizer with ``map_location=args.device`` under DDP, which on a CPU
        is ``cpu:0``, a location torch.load cannot restore to; there it loads to ``cpu``."""
        if not checkpoint or self.args.world_size <= 1 or self.args.device.type != "cpu":
            return super()._load_optimizer_and_scheduler(checkpoint)
        import torch

        original = torch.load

        def load_to_cpu(*args, **kwargs):
            if str(kwargs.get("map_location", "")).startswith("cpu"):
                kwargs["map_location"] = "cpu"
            return original(*args, **kwargs)

        torch.load = load_to_cpu
        try:
            return super()._load_optimizer_and_scheduler(checkpoint)
        finally:
            torch.load = original

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        target = model if model is not None else self.model
        dtypes = {name: p.dtype for name, p in target.named_parameters() if p.requires_grad}
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        _load_root_adapter(target, Path(resume_from_checkpoint))
        for name, param in target.named_parameters():
            if name in dtypes and param.dtype != dtypes[name]:
                param.data = param.data.to(dtypes[name])
        state_file = Path(resume_from_checkpoint) / COMPLETE_MARKER
        if hasattr(self, "_total_train_tokens") and state_file.is_file():
            logged = [h["num_tokens"] for h in json.loads(state_file.read_text()).get("log_history", [])
                      if "num_tokens" in h]
            if logged:
                self._total_train_tokens = int(logged[-1])
