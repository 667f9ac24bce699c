"""Can this machine run a RunConfig? Checked before any model loads.

Notebook 01's validation cell gets this through ``params_from_namespace``, and ``loralab run`` calls
it before the kernel starts::

    from loralab.params.runtime_check import check_runtime
    check_runtime(cfg)     # RuntimeCheckError (a ParamsError) naming the field and what to write

It imports torch (and, for the optimizer's name and packages, transformers) inside its functions
only, so importing it stays torch-free (``loralab plan`` and the validator answer instantly). Where the
installed torch was built without CUDA and ROCm (its ``torch/version.py`` says so), the CUDA check
answers False without importing torch: ``loralab run``'s process then never imports it (0.7 s).
``loralab run`` skips the transformers part (``packages=False``). Measured in one process on these 2 shared cores under load from other jobs:
importing torch (for the CUDA check) 6 s, then ``transformers.training_args`` 18 s more and
``Trainer`` 4 s more; the whole quick check in a fresh process took 4.8-8.6 s against 0.5-1 s for
validation alone. The notebook's cell runs the full check, where unsloth already imported transformers.

What was measured on the CPU machines (torch 2.13 CPU, bitsandbytes 0.50.2, transformers 5.17,
unsloth 2026.10.9), one optimizer step per ``optim`` name:

* Through plain transformers, bitsandbytes' 8-bit optimizers (``adamw_8bit``, ``lion_8bit`` ...)
  **do** step on a CPU (bitsandbytes 0.50 and later; earlier versions have no CPU kernel for them),
  and the ``paged_*`` ones fall back to non-paged state with a warning.
* But in a process that imported ``unsloth`` (every notebook), Unsloth's CPU backend rewrites
  ``TrainingArguments.optim``: any name with ``8bit``, ``paged``, ``bnb``, ``npu`` or ``xla`` (and
  ``adamw_apex_fused``, ``adafactor_8bit``) becomes ``adamw_torch_fused``, with one printed line. The
  run would silently train with another optimizer than its params (and metrics.json) say. So on a
  machine without CUDA these names are refused here, with ``adamw_torch`` as the alternative.
* ``galore_*``, ``apollo_*``, ``lomo``, ``adalomo``, ``schedule_free_*``, ``grokadamw``,
  ``stable_adamw`` and ``adamw_anyprecision`` need packages that are not installed: transformers'
  own ``Trainer.get_optimizer_cls_and_kwargs`` is asked, and what it refuses is reported.
* A 4-bit base needs bitsandbytes (the GPU machines lent to this project lack it).
* ``report_to`` needs its tracker's package (``loralab.train.tracking``).
* DoRA on a 4-bit base is refused on a CPU machine (``check_dora_base``: it does not reload verified).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import sys
from pathlib import Path

from loralab.params.errors import ParamsError
from loralab.params.run_config import RunConfig

CPU_OPTIMIZER = "adamw_torch"
# Unsloth's CPU backend (unsloth_zoo/cpu/trainer.py) replaces these with adamw_torch_fused.
CPU_REPLACED_OPTIMIZERS = ("adamw_apex_fused", "adafactor_8bit")
CPU_REPLACED_TAGS = ("8bit", "paged", "bnb", "npu", "xla")


class RuntimeCheckError(ParamsError):
    """The config is valid but this machine cannot run it; the message says what to write instead."""


def cuda_available() -> bool:
    """True when torch sees a CUDA GPU. A torch built without CUDA or ROCm answers without being imported."""
    first = "torch" not in sys.modules
    if first and not torch_has_gpu_build():
        return False  # what torch.cuda.is_available() says on such a build, 0.7 s sooner (AVX-512 kind)
    import torch

    return torch.cuda.is_available()


def torch_has_gpu_build() -> bool:
    """False only when the installed torch's ``torch/version.py`` says it was built with neither CUDA nor ROCm.

    Read as text, not imported: importing torch is what this spares. Anything unexpected answers True (then
    torch itself is asked).
    """
    import ast

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True
    try:
        tree = ast.parse((Path(spec.submodule_search_locations[0]) / "version.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return True
    builds = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id in ("cuda", "hip") and isinstance(node.value, ast.Constant):
            builds[target.id] = node.value.value
    return builds != {"cuda": None, "hip": None}


def known_optimizers() -> list[str]:
    """Every ``optim`` name this transformers version accepts."""
    from transformers.training_args import OptimizerNames

    return [name.value for name in OptimizerNames]


def replaced_on_cpu(optim: str) -> bool:
    """True for optimizers that Unsloth's CPU backend swaps for adamw_torch_fused (GPU-only in its view)."""
    name = optim.lower()
    return name in CPU_REPLACED_OPTIMIZERS or any(tag in name for tag in CPU_REPLACED_TAGS)


def check_gpu_optimizer(optim: str, on_gpu: bool) -> None:
    """RuntimeCheckError for an optimizer that Unsloth would silently replace on a machine without CUDA."""
    if not on_gpu and replaced_on_cpu(optim):
        raise RuntimeCheckError(
            f"optim: {optim!r} is a GPU optimizer (bitsandbytes 8-bit / paged, or TPU/NPU) and this machine has no "
            f"CUDA GPU: Unsloth's CPU backend would silently train with adamw_torch_fused instead. Write "
            f"optim: {CPU_OPTIMIZER} here (LoRA's optimizer state is small); keep {optim} for GPU params files.")


def check_optimizer(optim: str, on_gpu: bool) -> None:
    """RuntimeCheckError if transformers does not know ``optim`` or it cannot run as named on this machine."""
    known = known_optimizers()
    if optim not in known:
        match = difflib.get_close_matches(optim, known, n=1, cutoff=0.6)
        hint = f" Did you mean {match[0]!r}?" if match else f" Known names: {', '.join(known)}."
        raise RuntimeCheckError(f"optim: {optim!r} is not an optimizer transformers knows.{hint}")
    check_gpu_optimizer(optim, on_gpu)
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


def check_runtime(cfg: RunConfig, packages: bool = True) -> None:
    """RuntimeCheckError for what this machine cannot run as the config says.

    ``packages=False`` skips asking transformers about the optimizer's name and packages (slow import).
    """
    if packages:
        check_optimizer(cfg.optim, cuda_available())
    else:
        check_gpu_optimizer(cfg.optim, cuda_available())
    if cfg.load_in_4bit and not cfg.full_finetuning and importlib.util.find_spec("bitsandbytes") is None:
        raise RuntimeCheckError("load_in_4bit: true needs bitsandbytes, which is not installed here: "
                                "pip install bitsandbytes, or write load_in_4bit: false (16-bit LoRA).")
    check_dora_base(cfg, cuda_available())
    check_tracker(cfg.report_to)
    check_processes(cfg.num_processes, cuda_available())
    check_strategy(cfg.parallel_strategy, cuda_available())


def check_dora_base(cfg: RunConfig, on_gpu: bool) -> None:
    """RuntimeCheckError for DoRA on a 4-bit base on a CPU machine.

    Measured (tests/test_lora_variants_trained.py's setup, tiny model, 3 steps): a DoRA adapter trained on
    the NF4 base through Unsloth's CPU backend saves and reloads with identical adapter and base tensors,
    yet base + adapter reloaded gives other probe logits than the trained model (max |diff| 0.09 against an
    adapter effect of 1.5); an untrained DoRA adapter and one trained on the 16-bit base reload exactly. The
    cause was not found, so the combination is refused rather than saved unverifiable. The GPU path was not run.
    """
    if cfg.use_dora and cfg.load_in_4bit and not cfg.full_finetuning and not on_gpu:
        raise RuntimeCheckError("use_dora on a 4-bit base does not reload to the model it trained on this CPU "
                                "backend (measured, docs/lora-variants.md): write load_in_4bit: false for DoRA "
                                "here, or run on a GPU.")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity set; all cores where the OS cannot say)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def thread_budget() -> int:
    """Threads this process should compute with, for libraries that do not read OMP_NUM_THREADS themselves
    (llama.cpp): OMP_NUM_THREADS where a launcher set it (torchrun, ``loralab sweep --jobs N``, the test
    processes), else every usable core. llama.cpp's threads wait for each other spinning, so more threads
    than the cores this process has to itself run many times slower, not faster."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else usable_cores()


def check_processes(num_processes: int, on_gpu: bool) -> None:
    """RuntimeCheckError when this machine has fewer devices (GPUs, or CPU cores) than training processes."""
    if num_processes <= 1:
        return
    if on_gpu:
        import torch

        devices, unit = torch.cuda.device_count(), "GPUs"
    else:
        devices, unit = usable_cores(), "CPU cores"
    if num_processes > devices:
        raise RuntimeCheckError(f"num_processes: {num_processes} training processes, but this machine has {devices} "
                                f"{unit}: write num_processes: {devices} or less (1 trains in this process).")


def check_strategy(strategy: str, on_gpu: bool) -> None:
    """RuntimeCheckError for FSDP on a machine without GPUs.

    accelerate builds its FSDP plugin only for GPU-type distributed states: on CPU processes (gloo) the
    Trainer gets ``fsdp`` and silently trains plain DDP, a full copy of the model per process (measured
    with accelerate 1.15 / transformers 5.17). loralab refuses rather than promise sharding it cannot give.
    """
    if strategy == "fsdp" and not on_gpu:
        raise RuntimeCheckError("parallel_strategy: fsdp shards the model over GPUs, and this machine has none: "
                                "accelerate runs FSDP only on GPUs (on CPU processes it would train plain DDP, "
                                "a full copy per process). Write parallel_strategy: ddp here, or run on GPUs.")


# report_to -> (the module transformers looks for, what to pip install)
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"),
                    "mlflow": ("mlflow", "mlflow (or mlflow-skinny, sqlalchemy and alembic)"),
                    "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}


def check_tracker(report_to: str) -> None:
    """RuntimeCheckError when the tracker ``report_to`` names is not installed."""
    module, install = TRACKER_PACKAGES.get(report_to, (None, None))
    if module and importlib.util.find_spec(module) is None:
        raise RuntimeCheckError(f"report_to: {report_to} needs the {module} package, which is not installed here: "
                                f"pip install {install} (or pip install 'loralab[tracking]' for tensorboard and "
                                "mlflow), or write report_to: none.")


def validate_params_for_this_machine(params: dict, source: str = "params") -> RunConfig:
    """``validate_params`` plus the quick :func:`check_runtime` (``loralab run``, before the kernel starts)."""
    from loralab.params.run_config import validate_params

    cfg = validate_params(params, source=source)
    try:
        check_runtime(cfg, packages=False)
    except RuntimeCheckError as error:
        raise RuntimeCheckError(f"{source}: {error}") from None
    return cfg
