"""The benchmark script's own logic (the measuring itself runs in `make bench`, never in `make test`)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "train_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # module level is stdlib only: nothing heavy loads here
    return module


def _run(tokens_per_s: float, peak_gb: float) -> dict:
    return {"tokens_per_s": tokens_per_s, "peak_gb": peak_gb, "first_step_s": 20.0, "first_loss": 3.4}


def test_medians_are_taken_per_configuration(bench):
    med = bench.medians({"unsloth": [_run(40, 1.3), _run(50, 1.5), _run(44, 1.4)]})
    assert med["unsloth"]["tokens_per_s"] == 44
    assert med["unsloth"]["peak_gb"] == 1.4


@pytest.mark.parametrize(
    ("loralab", "within"),
    [((45.0, 1.40), True), ((43.7, 1.40), True), ((43.5, 1.40), False), ((45.0, 1.45), False), ((60.0, 1.0), True)],
)
def test_the_3_percent_target_against_raw_unsloth(bench, loralab, within):
    """Slower than 0.97x or heavier than 1.03x misses; faster or leaner than raw Unsloth is no miss."""
    med = bench.medians({"loralab": [_run(*loralab)], "unsloth": [_run(45.0, 1.40)]})
    speed, memory, ok = bench.against_unsloth(med)
    assert speed == pytest.approx(loralab[0] / 45.0)
    assert memory == pytest.approx(loralab[1] / 1.40)
    assert ok is within


def test_no_verdict_without_both_paths(bench):
    assert bench.against_unsloth(bench.medians({"loralab": [_run(45.0, 1.4)]})) is None


def test_an_unknown_configuration_is_refused_before_anything_runs():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--configs", "loralab,unslot"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2
    assert "unslot" in proc.stderr and "loralab, unsloth, trl_4bit, trl_16bit" in proc.stderr


def test_the_performance_page_table_is_what_the_committed_rounds_give(bench, capsys):
    """docs/performance.md's numbers come from bench/results/*.json, not from memory."""
    repo = SCRIPT.parents[1]
    results, settings = bench.pooled(sorted(str(p) for p in (repo / "bench" / "results").glob("*.json")))
    bench.print_report(results, settings)
    printed = capsys.readouterr().out
    page = (repo / "docs" / "performance.md").read_text()
    for line in printed.strip().splitlines():
        assert line in page, f"docs/performance.md's table is out of date; reprint it: missing {line!r}"


def test_runs_with_other_settings_are_not_pooled(bench, tmp_path):
    for name, steps in (("a.json", 8), ("b.json", 6)):
        (tmp_path / name).write_text(json.dumps({
            "args": {"steps": steps, "warmup": 2, "batch": 4, "seq": 256, "threads": 2},
            "runs": {"loralab": [dict(_run(45.0, 1.4), device="cpu")]}}))
    with pytest.raises(SystemExit, match="same settings"):
        bench.pooled([str(tmp_path / "a.json"), str(tmp_path / "b.json")])
