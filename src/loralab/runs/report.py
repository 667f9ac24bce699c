"""The table of the LoRA parameter arithmetic a notebook displays (before/after answers: ``loralab.eval``).

    from loralab.runs.report import layer_math_table
    display(layer_math_table(lora_layer_table(model)))    # one row per module kind
"""

from __future__ import annotations

from collections import defaultdict

from loralab.model.loading import LoraLayer


def layer_math_table(layers: list[LoraLayer]):
    """A DataFrame with one row per module kind (q_proj, ...): d, k, r, r*(d+k), layer count, total."""
    import pandas as pd

    groups: dict[tuple, int] = defaultdict(int)
    for layer in layers:
        groups[(layer.name.rsplit(".", 1)[-1], layer.d, layer.k, layer.r)] += 1
    rows = [{"module": m, "d (out)": d, "k (in)": k, "r": r, "r*(d+k)": r * (d + k), "layers": n,
             "trainable": n * r * (d + k)} for (m, d, k, r), n in groups.items()]
    table = pd.DataFrame(rows)
    if not table.empty:
        total = {"module": "total", "layers": int(table["layers"].sum()), "trainable": int(table["trainable"].sum())}
        table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
        table = table.astype({c: "Int64" for c in table.columns if c != "module"})  # blanks, not NaN
    return table
