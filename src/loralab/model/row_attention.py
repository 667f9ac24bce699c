"""Attention row by row for padding-free batches: what FlashAttention's variable-length kernels do, in SDPA.

    from loralab.model.row_attention import use_row_attention
    use_row_attention(model)      # True: packed rows now cost the sum of their squares, not the square of the sum

A padding-free batch is one long sequence whose position ids restart at every row. transformers' ``sdpa``
keeps the rows apart with a block-diagonal causal mask over the whole sequence, so attention costs
(sum of the row lengths)^2, and a masked SDPA cannot take its fused causal kernel. FlashAttention's
varlen kernels (on a GPU) run each row on its own. This attention does the same with
``torch.nn.functional.scaled_dot_product_attention``: it cuts the sequence where the position ids
restart and runs each row with ``is_causal=True`` (the fused kernel, no mask built), then joins the rows.

It is registered as ``loralab_sdpa_rows`` (transformers' ``AttentionInterface`` and
``AttentionMaskInterface``) and is exactly transformers' ``sdpa`` whenever a mask is needed (padded
batches, generation with a KV cache): the mask function builds sdpa's own mask unless there is no
padding mask and queries and keys are the same tokens, and only then does the attention cut rows.
:func:`use_row_attention` switches a model to it only where its attention layers are transformers' own
and ``sdpa`` (Unsloth's CPU backend; on a GPU Unsloth's own attention is left alone), and only for
models without a sliding window (whose mask the cut would drop). The trainer factory then measures
the switched model with ``loralab.train.packing.check_rows_kept_apart`` before any step.
"""

from __future__ import annotations

import itertools

NAME = "loralab_sdpa_rows"


def row_starts(position_ids) -> list[int]:
    """Where the rows of one flattened sequence start (position id 0), with the end appended."""
    starts = (position_ids == 0).nonzero().flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    return [*starts, int(position_ids.shape[0])]


def rows_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                      scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' sdpa attention, run row by row where the position ids restart and no mask is given."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    whole = attention_mask is not None or position_ids is None or query.shape[2] != key.shape[2] \
        or position_ids.shape[-1] != query.shape[2] or is_causal is False
    if not whole:
        rows = [row_starts(position_ids[b]) for b in range(position_ids.shape[0])]
        whole = all(len(starts) == 2 for starts in rows)  # no row restarts: plain causal sdpa
    if whole:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    if position_ids.shape[0] == 1 and query.shape[0] > 1:
        rows = rows * query.shape[0]
    outputs = []
    for b, starts in enumerate(rows):
        pieces = [sdpa_attention_forward(module, query[b:b + 1, :, s:e], key[b:b + 1, :, s:e],
                                         value[b:b + 1, :, s:e], None, dropout=dropout, scaling=scaling,
                                         is_causal=True)[0] for s, e in itertools.pairwise(starts)]
        outputs.append(torch.cat(pieces, dim=1))
    return torch.cat(outputs, dim=0), None


def rows_sdpa_mask(*args, attention_mask=None, q_offset=0, kv_offset=0, q_length=None, kv_length=None,
                   **kwargs):
    """sdpa's mask, or None (rows are cut from the position ids) when there is no padding and no cache offset."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and not q_offset and not kv_offset and q_length == kv_length:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, q_offset=q_offset, kv_offset=kv_offset,
                     q_length=q_length, kv_length=kv_length, **kwargs)


def register() -> None:
    """Register ``loralab_sdpa_rows`` with transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, rows_sdpa_forward)
    AttentionMaskInterface.register(NAME, rows_sdpa_mask)


def row_attention_applies(model) -> str | None:
    """None when :func:`use_row_attention` can switch ``model``; otherwise the reason it leaves it alone."""
    import inspect

    config = model.config
    if getattr(config, "_attn_implementation", None) not in ("sdpa", NAME):
        return f"the model's attention is {getattr(config, '_attn_implementation', None)!r}, not sdpa"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "the model has a sliding attention window"
    for sub in model.modules():
        if type(sub).__name__.endswith("Attention") and hasattr(sub, "o_proj"):
            if "ALL_ATTENTION_FUNCTIONS" not in inspect.getsource(type(sub).forward):
                return f"{type(sub).__name__}.forward is not transformers' own (patched)"
            return None
    return "no attention layer found"


def use_row_attention(model) -> bool:
    """Switch ``model`` (and every sub-config) to row-by-row attention where it applies; True if switched."""
    if row_attention_applies(model) is not None:
        return False
    register()
    seen = set()
    for sub in model.modules():
        config = getattr(sub, "config", None)
        if config is not None and id(config) not in seen and hasattr(config, "_attn_implementation"):
            seen.add(id(config))
            config._attn_implementation = NAME
    return True


def use_sdpa(model) -> None:
    """Undo :func:`use_row_attention` (back to transformers' sdpa)."""
    for sub in model.modules():
        config = getattr(sub, "config", None)
        if config is not None and getattr(config, "_attn_implementation", None) == NAME:
            config._attn_implementation = "sdpa"
