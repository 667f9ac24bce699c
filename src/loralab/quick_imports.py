"""A headless notebook kernel (``loralab run``) imports torch, transformers, TRL and Unsloth without CPython's
garbage collector walking through them again and again.

    papermill.execute_notebook(..., extra_arguments=[KERNEL_ARGUMENT])  # loralab.runs.runner
    with imports_without_collector(freeze=True):  # a torchrun worker, a test process, llama.cpp's converter
        import torch

Importing them creates about a million objects, and the collector's full passes over the growing heap
(ten of them) took 1.3 s of the 6.7 s that a notebook's import cell costs (AVX-512 kind): work that finds
no garbage, since modules, classes and functions live as long as the process. This IPython extension
switches the collector off while a cell runs as long as torch is not imported yet (the install cell and
the import cell of every shipped notebook). The cell that imported torch ends by freezing everything the
collector tracks then (``gc.freeze``: its later passes skip the imported modules), unless it already holds
a model's weights (a frozen reference cycle is never collected); any other such cell ends with one
collection of what it left as garbage. From then on the collector runs as usual. The freeze keeps what
the imports left as garbage: 17,600 objects, 9 MB, that a collection would take 0.54 s to find among the
million. Interactive Jupyter and Colab kernels do not load it. Measured on a tiny notebook-01 run (AVX-512
kind, gc callbacks): the collector's time in the kernel 1.94 s without this extension, 0.56 s when it still
collected before the freeze, 0.08 s now; the kernel's CPU 10.9 -> 9.5 s at the second of these.
``imports_without_collector`` does the same for a block of imports in a plain process.

While the collector waits, ``importlib.metadata.packages_distributions()`` also scans the installed
distributions once (``package_map_shared``): transformers and TRL each call it at import, and each call
reads the file list of every installed distribution (0.3 s in the project's environment).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import sys
from collections.abc import Iterator

from loralab.quick_exit import alive_instances, subclasses

KERNEL_ARGUMENT = "--IPKernelApp.extensions=loralab.quick_imports"


@contextlib.contextmanager
def imports_without_collector(freeze: bool = False) -> Iterator[None]:
    """The collector off (and the installed distributions scanned once: ``package_map_shared``) while the block
    imports; then one collection of what it left as garbage, collector on.

    ``freeze=True`` instead moves everything then tracked out of the collector's reach (``gc.freeze``), so
    that its later passes skip the imported modules: only for a process that holds nothing but imports yet
    (a fresh torchrun worker or test process), because a frozen reference cycle is never collected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with package_map_shared():
            yield
    finally:
        settle(freeze)
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def package_map_shared() -> Iterator[None]:
    """In the block, ``importlib.metadata.packages_distributions()`` answers every call from its first scan, each
    caller getting its own copy: right as long as nothing is installed meanwhile, as while importing."""
    scan = importlib.metadata.packages_distributions
    first: dict[str, list[str]] | None = None

    def packages_distributions() -> dict[str, list[str]]:
        nonlocal first
        if first is None:
            first = dict(scan())
        return {name: list(dists) for name, dists in first.items()}

    importlib.metadata.packages_distributions = packages_distributions
    try:
        yield
    finally:
        importlib.metadata.packages_distributions = scan


def settle(freeze: bool) -> None:
    """After imports with the collector off: freeze everything (the imports' garbage too), or collect the garbage."""
    if freeze:
        gc.freeze()
    else:
        gc.collect()


def weights_alive() -> bool:
    """True when a torch Parameter (a model's weight, of any class derived from it) is alive in this process."""
    import torch

    return next(alive_instances(subclasses(torch.nn.Parameter)), None) is not None


class ImportCells:
    """pre_run_cell / post_run_cell callbacks: the collector waits, and the package map is scanned once, during
    cells that run before torch is imported."""

    def __init__(self) -> None:
        self.paused: contextlib.ExitStack | None = None  # what a paused cell undoes when it ends

    def pre_run_cell(self, info=None) -> None:
        if "torch" not in sys.modules and gc.isenabled():
            gc.disable()
            self.paused = contextlib.ExitStack()
            self.paused.enter_context(package_map_shared())

    def post_run_cell(self, result=None) -> None:
        if self.paused is None:
            return
        self.paused.close()
        self.paused = None
        settle(freeze="torch" in sys.modules and not weights_alive())  # the imports alone: freezing them is safe
        gc.enable()


def load_ipython_extension(ipython) -> None:
    """IPython's entry point (``--IPKernelApp.extensions=loralab.quick_imports``)."""
    cells = ImportCells()
    ipython.events.register("pre_run_cell", cells.pre_run_cell)
    ipython.events.register("post_run_cell", cells.post_run_cell)
