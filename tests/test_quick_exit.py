"""loralab.quick_exit: a process that imported loralab skips the teardown's garbage collections and keeps what
its unclosed files hold."""

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


def test_file_classes_include_the_c_files_and_python_subclasses():
    import gzip
    import io

    from loralab.quick_exit import file_classes

    assert {io.TextIOWrapper, io.BufferedWriter, io.FileIO, gzip.GzipFile} <= file_classes()
    assert str not in file_classes() and dict not in file_classes()
