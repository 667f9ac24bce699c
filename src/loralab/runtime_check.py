"""Can this machine run a RunConfig? Checked before any model loads.

Notebook 01's validation cell gets this through ``params_from_namespace``, and ``loralab run`` calls
it before the kernel starts::

    from loralab.runtime_check import check_runtime
    notes = check_runtime(cfg)     # RuntimeCheckError (a ParamsError) naming the field and what to write

It imports torch and transformers, so ``loralab.config`` imports it lazily (``loralab plan`` stays
torch-free).

What was measured on the CPU machines (torch 2.13 CPU, bitsandbytes 0.50.2, transformers 5.17), one
optimizer step per ``optim`` name through transformers' own ``Trainer.get_optimizer_cls_and_kwargs``:
bitsandbytes' 8-bit optimizers (``adamw_8bit``, ``lion_8bit``, ``rmsprop_bnb_8bit`` ...) **do** run
on a CPU; the ``paged_*`` ones run too, falling back to non-paged state with a warning (paging moves
optimizer state between GPU and CPU memory, which means nothing without a GPU); ``adamw_torch_xla``
and ``adamw_torch_npu_fused`` need a TPU / an Ascend NPU; ``galore_*``, ``apollo_*``, ``lomo``,
``adalomo``, ``schedule_free_*``, ``grokadamw``, ``stable_adamw`` and ``adamw_anyprecision`` need
packages that are not installed. So instead of a list of "GPU-only" names that would go stale, the
check asks transformers to resolve the optimizer for this machine and reports what it refuses, and
it checks that a 4-bit base has bitsandbytes (the GPU machines here lack it).
"""

from __future__ import annotations

import difflib
import importlib.util
import warnings

from loralab.config import ParamsError, RunConfig

CPU_OPTIMIZER = "adamw_torch"


class RuntimeCheckError(ParamsError):
    """The config is valid but this machine cannot run it; the message says what to write instead."""


class RuntimeNote(UserWarning):
    """The config runs here, but not as it would on a GPU (e.g. a paged optimizer on a CPU)."""


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU."""
    import torch

    return torch.cuda.is_available()


def known_optimizers() -> list[str]:
    """Every ``optim`` name this transformers version accepts."""
    from transformers.training_args import OptimizerNames

    return [name.value for name in OptimizerNames]


def check_optimizer(optim: str, on_gpu: bool) -> None:
    """RuntimeCheckError if transformers does not know ``optim`` or cannot build it on this machine."""
    known = known_optimizers()
    if optim not in known:
        match = difflib.get_close_matches(optim, known, n=1, cutoff=0.6)
        hint = f" Did you mean {match[0]!r}?" if match else f" Known names: {', '.join(known)}."
        raise RuntimeCheckError(f"optim: {optim!r} is not an optimizer transformers knows.{hint}")
    import torch
    from transformers import Trainer, TrainingArguments

    needs_targets = optim.startswith(("galore", "apollo"))
    args = TrainingArguments(output_dir="loralab-runtime-check", optim=optim, use_cpu=not on_gpu, report_to="none",
                             optim_target_modules=["0"] if needs_targets else None)
    try:
        Trainer.get_optimizer_cls_and_kwargs(args, torch.nn.Sequential(torch.nn.Linear(2, 2)))
    except (ImportError, ValueError) as error:
        reason = str(error).strip()
        if isinstance(error, ValueError) and not any(w in reason.lower() for w in ("install", "import")):
            return  # a complaint about the stand-in model, not about this machine
        where = "this GPU machine" if on_gpu else "this CPU machine"
        raise RuntimeCheckError(f"optim: {optim!r} cannot run on {where}: {reason} Install what it needs, or "
                                f"write optim: {CPU_OPTIMIZER} (works everywhere).") from None


def check_runtime(cfg: RunConfig) -> list[str]:
    """Raise RuntimeCheckError for what cannot run here; return (and warn) notes for what runs differently."""
    on_gpu = cuda_available()
    check_optimizer(cfg.optim, on_gpu)
    notes = []
    if cfg.load_in_4bit and not cfg.full_finetuning and importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeCheckError("load_in_4bit: true needs bitsandbytes, which is not installed here: "
                                "pip install bitsandbytes, or write load_in_4bit: false (16-bit LoRA).")
    if not on_gpu and cfg.optim.startswith("paged_"):
        notes.append(f"optim: {cfg.optim!r} pages optimizer state between GPU and CPU memory; with no GPU "
                     f"bitsandbytes runs it as the non-paged version (same updates, no memory saving).")
    for note in notes:
        warnings.warn(note, RuntimeNote, stacklevel=2)
    return notes


def validate_params_for_this_machine(params: dict, source: str = "params") -> RunConfig:
    """``validate_params`` plus :func:`check_runtime` (what ``loralab run`` calls before the kernel starts)."""
    from loralab.config import validate_params

    cfg = validate_params(params, source=source)
    try:
        check_runtime(cfg)
    except RuntimeCheckError as error:
        raise RuntimeCheckError(f"{source}: {error}") from None
    return cfg
