"""The export table of docs/adapters.md: merge an adapter, export it for llama.cpp, run every file in llama.cpp.

    .venv/bin/python bench/export_table.py runs/<run>/adapter      # after `make run`; about 5 minutes here

Prints one row per file (format, size, tensor types, parity against the model as trained on 8 held-out
prompts x 24 tokens, JSON shape of 20 held-out answers) and the model as trained's own JSON shape.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("UNSLOTH_CPU_BF16", "0")  # fp32 compute, as the parity thresholds were measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="where the merged folder and the GGUF files go")
    args = parser.parse_args()
    from loralab.adapters.as_trained import load_as_trained
    from loralab.eval.token_model_scores import embedded_task_scores
    from loralab.export.gguf_export import export_for_llama_cpp
    from loralab.export.merge import merge_adapter

    out = args.out or Path(tempfile.mkdtemp(prefix="loralab-export-"))
    trained, tokenizer = load_as_trained(args.adapter)
    print(f"model as trained: json_shape {embedded_task_scores(trained, tokenizer)['json_shape']:.2f} on 20 held-out questions")
    del trained
    merged = merge_adapter(args.adapter, out / "merged")
    print(merged.summary())
    export = export_for_llama_cpp(merged, out / "gguf", out_types=("q8_0", "q5_k_m", "q4_k_m"), lora=True,
                                  score=embedded_task_scores)
    print(export.summary())
    print("| format | MB | greedy identical | top-1 | mean / max KL | JSON shape, 20 q. | within thresholds |")
    for f in export.files:
        p = f.parity
        print(f"| {f.format} | {f.bytes / 1e6:.0f} | {p.greedy_agreement * p.prompts:.0f}/{p.prompts} | "
              f"{p.top1_agreement:.3f} | {p.mean_kl:.1e} / {p.max_kl:.2g} | {f.scores['json_shape'] * 20:.0f}/20 | "
              f"{p.passed} |")


if __name__ == "__main__":
    main()
