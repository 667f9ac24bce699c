"""The file-digest cache under $LORALAB_CACHE stays whole when several processes fill it at once (parallel sweeps)."""

from __future__ import annotations

import hashlib
import multiprocessing
from pathlib import Path

from loralab.model import fingerprints
from loralab.model.fingerprints import file_sha256

FILES_PER_JOB = 150


def _hash_files(cache: str, paths: list[str], start) -> None:
    import os

    os.environ["LORALAB_CACHE"] = cache
    start.wait()  # both jobs begin together
    for path in paths:
        file_sha256(path)


def test_two_jobs_filling_the_cache_at_once_lose_no_entry(tmp_path, monkeypatch):
    folder = tmp_path / "files"
    folder.mkdir()
    paths = []
    for i in range(2 * FILES_PER_JOB):
        path = folder / f"f{i}.bin"
        path.write_bytes(f"file {i}".encode())
        paths.append(str(path))
    cache = str(tmp_path / "cache")
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each, as two sweep jobs are
    start = context.Barrier(2)
    jobs = [context.Process(target=_hash_files, args=(cache, paths[i::2], start)) for i in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=120)
        assert job.exitcode == 0
    monkeypatch.setenv("LORALAB_CACHE", cache)

    def no_hashing(path: Path) -> str:
        raise AssertionError(f"{path}: its digest was lost from the cache")

    monkeypatch.setattr(fingerprints, "_sha256_file", no_hashing)
    for path in paths:  # every digest either job wrote is still there
        assert file_sha256(path) == hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_damaged_entry_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LORALAB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"weights")
    digest = file_sha256(path)
    entries = list((tmp_path / "cache" / "fingerprints").iterdir())
    assert len(entries) == 1
    entries[0].write_text("{half an entr")
    assert file_sha256(path) == digest

