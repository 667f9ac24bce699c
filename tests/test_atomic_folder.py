"""A folder written aside replaces the old one only when the write finished."""

from __future__ import annotations

import pytest

from loralab.atomic_folder import folder_written_aside


def test_success_replaces_and_failure_keeps_the_old_folder(tmp_path):
    target = tmp_path / "adapter"
    with folder_written_aside(target) as staging:
        (staging / "weights").write_text("v1")
    assert (target / "weights").read_text() == "v1"

    with pytest.raises(RuntimeError), folder_written_aside(target) as staging:
        (staging / "weights").write_text("half")
        raise RuntimeError("killed mid-write")
    assert (target / "weights").read_text() == "v1", "an interrupted write must not touch the old folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"], "no staging folder left behind"

    with folder_written_aside(target) as staging:
        (staging / "weights").write_text("v2")
    assert (target / "weights").read_text() == "v2"
