"""A file written aside replaces the old one only when the write finished."""

from __future__ import annotations

import csv
import json
import os
import stat

import pytest

from loralab.atomic_file import file_written_aside, write_text_aside


def test_success_replaces_and_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "metrics.json"
    assert write_text_aside(target, '{"v": 1}') == target
    assert json.loads(target.read_text()) == {"v": 1}

    with pytest.raises(RuntimeError), file_written_aside(target) as handle:
        handle.write('{"v": ')
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}, "an interrupted write must not touch the old file"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"], "no temporary file left behind"

    write_text_aside(target, '{"v": 2}')
    assert json.loads(target.read_text()) == {"v": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_first_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError), file_written_aside(tmp_path / "results.csv") as handle:
        handle.write("run,loss\n")
        raise ValueError("bad row")
    assert list(tmp_path.iterdir()) == []


def test_encoding_newline_and_mode_pass_through(tmp_path):
    write_text_aside(tmp_path / "Modelfile", "SYSTEM \"réponds\"\n", encoding="utf-8")
    assert (tmp_path / "Modelfile").read_bytes() == "SYSTEM \"réponds\"\n".encode()
    with file_written_aside(tmp_path / "results.csv", newline="") as handle:
        csv.writer(handle).writerow(["a", "b"])
    assert (tmp_path / "results.csv").read_bytes() == b"a,b\r\n"  # csv's own line ends, not translated
    with file_written_aside(tmp_path / "blob", mode="wb") as handle:
        handle.write(b"\x00\x01")
    assert (tmp_path / "blob").read_bytes() == b"\x00\x01"


def test_the_file_is_readable_like_one_open_made(tmp_path):
    mask = os.umask(0o022)
    try:
        write_text_aside(tmp_path / "metrics.json", "{}")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == 0o644
