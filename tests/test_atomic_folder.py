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


def test_the_folder_is_readable_like_one_mkdir_made(tmp_path):
    """tempfile.mkdtemp makes 0700 and safetensors writes 0600: another user (a server) could not read them."""
    import os
    import stat

    import torch
    from safetensors.torch import save_file

    from loralab.atomic_folder import current_umask

    target = tmp_path / "adapter"
    with folder_written_aside(target) as staging:
        save_file({"w": torch.zeros(2)}, str(staging / "adapter_model.safetensors"))
        (staging / "sub").mkdir(mode=0o700)
        (staging / "sub" / "x.json").write_text("{}")
        os.chmod(staging / "sub" / "x.json", 0o600)
    mask = current_umask()
    assert stat.S_IMODE(target.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((target / "sub").stat().st_mode) == 0o777 & ~mask
    for name in ("adapter_model.safetensors", "sub/x.json"):
        assert stat.S_IMODE((target / name).stat().st_mode) == 0o666 & ~mask, name
