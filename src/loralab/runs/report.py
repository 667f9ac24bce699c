"""Tables a notebook displays: the LoRA parameter arithmetic and before/after answers.

    from loralab.runs.report import layer_math_table, side_by_side
    display(layer_math_table(lora_layer_table(model)))    # one row per module kind
    display(side_by_side(before, after, n=3))
"""

from __future__ import annotations

from collections import defaultdict

from loralab.eval.json_shape import TaskScore
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


def side_by_side(before: TaskScore, after: TaskScore, n: int = 3):
    """A DataFrame of the first ``n`` held-out questions with the answers before and after training."""
    import pandas as pd

    rows = [{"question": b["question"], "before": b["reply"][:120], "after": a["reply"][:120],
             "shape ok after": a["shape_ok"]} for b, a in zip(before.rows[:n], after.rows[:n])]
    return pd.DataFrame(rows)
