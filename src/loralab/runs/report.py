"""The table of the LoRA parameter arithmetic a notebook displays (before/after answers: ``loralab.eval``).

    from loralab.runs.report import adapter_summary, layer_math_table
    display(layer_math_table(lora_layer_table(model)))    # one row per module kind
    print(adapter_summary(model, layers, trainable, total))  # variant, r, alpha, scale; the count checked
"""

from __future__ import annotations

from collections import defaultdict

from loralab.model.loading import LoraLayer


def layer_math_table(layers: list[LoraLayer]):
    """A DataFrame with one row per module kind (q_proj, ...): d, k, r, r*(d+k), DoRA's d, layer count, total."""
    import pandas as pd

    groups: dict[tuple, int] = defaultdict(int)
    for layer in layers:
        groups[(layer.name.rsplit(".", 1)[-1], layer.d, layer.k, layer.r, layer.magnitude)] += 1
    dora = any(layer.magnitude for layer in layers)
    rows = [{"module": m, "d (out)": d, "k (in)": k, "r": r, "r*(d+k)": r * (d + k),
             **({"DoRA magnitude (d)": mag} if dora else {}), "layers": n,
             "trainable": n * (r * (d + k) + mag)} for (m, d, k, r, mag), n in groups.items()]
    table = pd.DataFrame(rows)
    if not table.empty:
        total = {"module": "total", "layers": int(table["layers"].sum()), "trainable": int(table["trainable"].sum())}
        table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
        table = table.astype({c: "Int64" for c in table.columns if c != "module"})  # blanks, not NaN
    return table


def adapter_summary(model, layers: list[LoraLayer], trainable: int, total: int) -> str:
    """The attached adapter in three lines: its variant with r, alpha and the effective scale (alpha/r, or
    alpha/sqrt(r) with rsLoRA), the trainable count, and the per-layer sum that must equal it (r*(d+k), plus
    d per layer for DoRA's magnitudes). Read from the model's own PEFT config, so an adapter loaded from
    a folder is described as it is."""
    from loralab.params.run_config import scale_formula, variant_name

    share = f"{trainable:,} of {total:,} ({100 * trainable / total:.2f}%)"
    config = (getattr(model, "peft_config", None) or {}).get("default")
    if config is None:
        return f"no adapter (full fine-tuning): trainable {share}"
    name = variant_name(config.use_rslora, config.use_dora, config.init_lora_weights, None)
    line = f"{name}: r={config.r}, alpha={config.lora_alpha:g}, {scale_formula(config.lora_alpha, config.r, config.use_rslora)}"
    per_layer = "r*(d+k) + d (DoRA's magnitudes)" if config.use_dora else "r*(d+k)"
    layer_sum = sum(layer.params for layer in layers)
    return (f"{line}\ntrainable: {share}\nsum of {per_layer} over {len(layers)} adapted layers: {layer_sum:,}"
            f"  ->  matches: {layer_sum == trainable}")
