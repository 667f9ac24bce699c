"""The realistic-length benchmark's own logic: the rows' lengths, the FLOP count, the roofline, the report.

The measuring itself runs in `make bench`, never in `make test` (shared machines are too noisy for it).
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from loralab.model.embedded import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("embedded/smollm2-135m-instruct"))


def test_generated_rows_have_the_published_mean_lengths(tokenizer):
    lengths = _load("chat_lengths")
    rows = lengths.chat_rows(tokenizer, 400, seed=1)
    users = [len(tokenizer(m["content"], add_special_tokens=False).input_ids)
             for r in rows for m in r["messages"] if m["role"] == "user"]
    answers = [len(tokenizer(m["content"], add_special_tokens=False).input_ids)
               for r in rows for m in r["messages"] if m["role"] == "assistant"]
    turns = statistics.mean(len(r["messages"]) / 2 for r in rows)
    assert abs(statistics.mean(users) / lengths.PROMPT_MEAN - 1) < 0.15, statistics.mean(users)
    assert abs(statistics.mean(answers) / lengths.RESPONSE_MEAN - 1) < 0.15, statistics.mean(answers)
    assert abs(turns - 2.0) < 0.15, turns
    assert statistics.median(answers) < statistics.mean(answers), "a long right tail, as chat data have"
    assert lengths.chat_rows(tokenizer, 3, seed=1) == rows[:3], "deterministic for a seed"


def test_the_flop_count_names_the_embedded_models_weights(embedded_config):
    bench = _load("packing_bench")
    n, attention = bench.model_flops(embedded_config)
    assert n == 134_479_872  # 30 blocks' linear layers (106.2M) + the LM head (28.3M)
    assert attention == 12 * 30 * 576


def test_the_roofline_is_a_positive_matmul_rate(embedded_config):
    bench = _load("packing_bench")
    small = dict(embedded_config, num_hidden_layers=1, vocab_size=1024)
    assert bench.roofline(small, threads=1, dtype_name="float32", tokens=64, repeats=2) > 1e8


def test_the_report_prints_ratios_against_raw_unsloth(tmp_path, capsys):
    bench = _load("packing_bench")
    marks = dict.fromkeys(bench.MARKS, 1.0)

    def run(config, packing, tok_s, pad, peak):
        return {"config": config, "packing": packing, "batch": "4 x 1", "useful_tokens_per_s": tok_s,
                "answer_tokens_per_s": tok_s / 2, "rows_per_s": 1.0, "padding_share": pad, "flops_per_s": 5e10,
                "n_flops": 1, "compute_dtype": "float32", "peak_gb": peak, "first_step_s": 5.0,
                "breakdown": marks, "first_loss": 3.0, "device": "cpu, 2 threads"}

    saved = {"args": {"rows": 64, "seq": 1024, "batch": 4, "steps": 3, "warmup": 1},
             "rooflines": {"float32": 1e11, "bfloat16": 2e11},
             "runs": {"loralab": [run("loralab", "padding_free", 300.0, 0.0, 2.0)],
                      "unsloth": [run("unsloth", "none", 200.0, 0.4, 2.0)]}}
    path = tmp_path / "a.json"
    path.write_text(json.dumps(saved))
    sys.argv = ["packing_bench.py", "--report", str(path)]
    assert bench.main() == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("loralab "))
    assert "1.50" in row and "50.0%" in row and "0.0%" in row
    assert "seconds before the first step ends" in out


@pytest.mark.parametrize("machine", ["avx2_fp32", "avx512_bf16"])
def test_the_performance_page_table_is_what_the_committed_rounds_give(machine, capsys):
    """docs/performance.md's realistic-length numbers come from bench/results/packing/<machine>/*.json, not from memory.

    Each machine kind's rounds are pooled on their own (a bf16 CPU is several times faster).
    """
    bench = _load("packing_bench")
    repo = BENCH.parent
    files = sorted(str(p) for p in (BENCH / "results" / "packing" / machine).glob("*.json"))
    assert files
    sys.argv = ["packing_bench.py", "--report", *files]
    assert bench.main() == 0
    page = (repo / "docs" / "performance.md").read_text()
    for line in capsys.readouterr().out.strip().splitlines():
        assert line in page, f"docs/performance.md's packing table is out of date; reprint it: missing {line!r}"
