"""loralab.quick_exit and loralab.quick_imports: the garbage collector kept out of the way at exit (unclosed files
keep what they hold) and while a headless notebook kernel imports torch & co. (only in cells before torch), and
the installed distributions scanned once while they import."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import atexit, gc, sys
atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count() > 0, flush=True))  # runs after loralab's
import loralab
import loralab.quick_exit
loralab.quick_exit.register()  # a second call adds nothing
class Holder:
    pass
held = Holder()
held.me = held  # a reference cycle: only a collection would free it, and so close its file
held.file = open(sys.argv[1], "w")
held.file.write("kept " * 1000)  # 5,000 characters: still in the file's buffer, never flushed by this script
"""


def test_an_unclosed_file_keeps_what_was_written_and_the_collector_is_frozen_at_exit(tmp_path):
    target = tmp_path / "unclosed.txt"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(target)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["frozen at exit: True"]
    assert target.read_text() == "kept " * 1000


def test_the_scan_finds_exactly_the_instances_of_the_classes_asked_for():
    import gzip
    import io

    from loralab.quick_exit import alive_instances, subclasses

    files = subclasses(io.IOBase.__base__)
    assert {io.TextIOWrapper, io.BufferedWriter, io.FileIO, gzip.GzipFile} <= files and str not in files
    buffer = io.BytesIO()
    found = list(alive_instances(files))
    assert any(obj is buffer for obj in found) and all(type(obj) in files for obj in found)


CELLS = r"""
import gc, importlib.metadata, sys
from loralab.quick_imports import ImportCells, imports_without_collector
scan = importlib.metadata.packages_distributions
def state():
    return gc.isenabled(), "shared map" if importlib.metadata.packages_distributions is not scan else "scans"
cells = ImportCells()
assert "torch" not in sys.modules and gc.isenabled()
cells.pre_run_cell()                       # a cell before torch (the install cell): the collector waits
print("install cell:", *state())
class Cycle:
    pass
garbage = Cycle(); garbage.me = garbage; del garbage   # garbage only a collection frees
cells.post_run_cell()                      # one collection, the collector back
print("after it:", *state(), gc.collect())
cells.pre_run_cell()                       # the import cell
print("import cell:", *state())
import torch
cells.post_run_cell()                      # the imports alone: collected once, then frozen
print("after it:", *state(), gc.get_freeze_count() > 100_000)
cells.pre_run_cell()                       # later cells: the collector as usual
print("later cell:", *state())
cells.post_run_cell()
with imports_without_collector():
    print("in the block:", *state())
print("after the block:", *state(), gc.get_freeze_count() > 100_000)
"""

WEIGHTS = r"""
import gc, sys
from loralab.quick_imports import ImportCells, weights_alive
cells = ImportCells()
cells.pre_run_cell()                       # a cell that imports torch and builds a model at once
import torch
model = torch.nn.Linear(4, 4)
print("weights alive:", weights_alive())
cells.post_run_cell()
print("after it:", gc.isenabled(), gc.get_freeze_count())  # not frozen: a model could be in a cycle
"""


def test_the_collector_waits_only_in_cells_before_torch():
    done = subprocess.run([sys.executable, "-c", CELLS], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "install cell: False shared map", "after it: True scans 0", "import cell: False shared map",
        "after it: True scans True", "later cell: True scans", "in the block: False shared map",
        "after the block: True scans True"]


def test_in_an_import_block_the_installed_distributions_are_scanned_once(monkeypatch):
    """transformers and TRL each call packages_distributions() at import: the second call is answered from the
    first scan, with its own copy; after the block every call scans again."""
    import importlib.metadata

    from loralab.quick_imports import package_map_shared

    scans = []

    def scan() -> dict[str, list[str]]:
        scans.append(len(scans))
        return {"yaml": ["PyYAML"], "google": ["protobuf", "googleapis-common-protos"]}

    monkeypatch.setattr(importlib.metadata, "packages_distributions", scan)
    with package_map_shared():
        first = importlib.metadata.packages_distributions()
        first["yaml"].append("a caller's change")
        second = importlib.metadata.packages_distributions()
    assert second == {"yaml": ["PyYAML"], "google": ["protobuf", "googleapis-common-protos"]}
    assert scans == [0] and importlib.metadata.packages_distributions is scan
    importlib.metadata.packages_distributions()
    assert scans == [0, 1]


def test_a_cell_that_imports_torch_and_builds_a_model_is_not_frozen():
    done = subprocess.run([sys.executable, "-c", WEIGHTS], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["weights alive: True", "after it: True 0"]
