"""The stack's known messages that do not apply to a loralab run, hidden where they arise (a notebook's first call).

    from loralab.model import quiet_known_warnings
    quiet_known_warnings()  # before importing unsloth, torch, transformers, TRL or PEFT
    import unsloth

Importing Unsloth, torch, torchao and TRL writes a few warnings to standard error; a notebook front end shows
each one as a red block, and a reader takes it for a failure. The ones listed in ``KNOWN_MESSAGES`` say
nothing a loralab run needs to act on (each entry says why). :func:`quiet_known_warnings` hides exactly
those: a filter on the named logger that drops records whose message matches, and for each of
``KNOWN_WARNINGS`` a ``warnings`` filter by message and module. Every other message of those loggers, and every other warning, still
shows. Nothing happens on import; the call is the notebook's own, in its import cell.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass


@dataclass(frozen=True)
class KnownMessage:
    """One message of one logger that does not apply to a loralab run, and why."""

    logger: str  # the logger that emits it (the module's ``logging.getLogger(__name__)``)
    pattern: str  # a regular expression searched in the formatted message
    why: str  # why it needs no action here


KNOWN_MESSAGES: tuple[KnownMessage, ...] = (
    KnownMessage("torch.utils._pytree", r"is an Enum subclass and is now natively supported by torch\.compile",
                 "torchao (imported by Unsloth and PEFT) registers two enums the old way; torch announces the "
                 "change to torchao, there is nothing to do in a run"),
    KnownMessage("torchao.kernel.intmm", r"Detected no triton",
                 "Triton is for CUDA GPUs only; on a CPU there is none, and loralab calls no Triton kernel"),
    KnownMessage("torchao", r"Failed to load \S*torchao/_C\w*\.\S*so\b",
                 "torchao's prebuilt CUDA kernels (MX-FP8, CUTLASS) do not load without a matching GPU build; "
                 "loralab calls none of them"),
    KnownMessage("trl.trainer.sft_trainer",
                 r"Padding-free training is enabled, but the attention implementation is not set",
                 "loralab.train.keep_rows_apart runs the model on packed and separate rows before the trainer "
                 "is built and refuses padding-free batches where the attention mixes them"),
)


@dataclass(frozen=True)
class KnownWarning:
    """One Python warning (``warnings.warn``) of one module that does not apply to a loralab run, and why."""

    module: str  # a regular expression matched against the warning's module, as warnings.filterwarnings takes it
    message: str  # the start of the message (plain text)
    why: str


KNOWN_WARNINGS: tuple[KnownWarning, ...] = (
    KnownWarning(r"tqdm\.auto", "IProgress not found",
                 "tqdm.auto asks for ipywidgets to draw a widget bar; under papermill no front end draws one, in a "
                 "notebook the trainer's progress display is HTML, and tqdm falls back to a text bar"),
    KnownWarning(r"huggingface_hub\.constants", "The `HF_HUB_ENABLE_HF_TRANSFER` environment variable is deprecated",
                 "unsloth_zoo sets HF_HUB_ENABLE_HF_TRANSFER itself when hf_transfer is installed, and every process "
                 "started after it inherits it; huggingface_hub 1.x no longer reads it, so it changes nothing"),
)


class _DropKnown(logging.Filter):
    """Drops the records of one logger whose message matches one of ``patterns``."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self.patterns = [re.compile(pattern) for pattern in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a record whose arguments do not format: not ours to judge
            return True
        return not any(pattern.search(message) for pattern in self.patterns)


def _installed(logger: logging.Logger) -> _DropKnown | None:
    return next((f for f in logger.filters if isinstance(f, _DropKnown)), None)


def quiet_known_warnings() -> list[str]:
    """Hide ``KNOWN_MESSAGES`` and ``KNOWN_WARNINGS``; returns the loggers filtered. Calling it again changes nothing.

    Call it before the libraries are imported: most of these messages are written while they import.
    """
    by_logger: dict[str, list[str]] = {}
    for known in KNOWN_MESSAGES:
        by_logger.setdefault(known.logger, []).append(known.pattern)
    for name, patterns in by_logger.items():
        logger = logging.getLogger(name)
        if _installed(logger) is None:
            logger.addFilter(_DropKnown(patterns))
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(known.message), module=known.module)
    return sorted(by_logger)
