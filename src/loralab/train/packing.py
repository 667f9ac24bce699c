"""Batches without padding: TRL's padding-free batching and best-fit-decreasing packing, checked first.

    from loralab.train.packing import keep_rows_apart
    args = SFTConfig(...)                                    # trainer_settings(cfg, ...) has packing_args(cfg.packing)
    keep_rows_apart(model, tokenizer, args, cfg.packing)     # PackingError if attention would mix the rows of a batch

``packing`` (a RunConfig field) chooses how the rows of a batch are laid out:

- ``none``: each row padded to the longest row of its batch (TRL's default; pad tokens cost compute).
- ``padding_free``: the same rows per step, concatenated into one sequence with the position ids
  restarting at every row (TRL's ``padding_free``): the same training step without the pad tokens.
- ``packed``: TRL's best-fit-decreasing packing: whole rows fill sequences of ``max_seq_length`` tokens,
  and each batch holds ``per_device_train_batch_size`` such sequences (so more rows per step than rows
  per batch). Boundaries are kept the same way (position ids restart at every row).

Both rely on the attention implementation seeing the restarting position ids and attending within a
row only: FlashAttention does it from the position ids, and transformers 5's SDPA builds a block-diagonal
causal mask from them (measured here; eager shares the mask code, not measured). That mask costs
(sum of the row lengths)^2, so where the model's attention is transformers' sdpa (Unsloth's CPU backend)
:func:`keep_rows_apart` switches it to ``loralab.model.row_attention``, which runs SDPA row by row from the
same position ids (the sum of the squares, as FlashAttention's varlen kernels). An attention that ignored
the position ids would silently let every row attend to the rows before it, so :func:`check_rows_kept_apart`
runs the model on two short rows packed and alone before training and refuses packing where the logits differ.
"""

from __future__ import annotations

from typing import Any

from loralab.model.row_attention import use_row_attention
from loralab.params.errors import ParamsError


class PackingError(ParamsError):
    """Packing asked on a model/device whose attention does not keep the packed rows apart."""


PROBE_ROWS = ("The capital of France is Paris, and the capital of Spain is",
              "Two plus two equals four, and three plus three equals")
# Packed vs alone: the same computation up to rounding (embedded model, 4-bit: 2.5e-6 of the largest logit
# in fp32, 0.025 in bf16); an attention that mixes the rows moves them by about the logits' own size (~1).
TOLERANCE = 0.2  # of the largest logit magnitude of the row computed alone


def packing_args(packing: str) -> dict[str, Any]:
    """SFTConfig arguments for ``packing``. Padding-free batches take rows already cut at ``max_seq_length``
    (``loralab.data.supervision.supervised_dataset``): TRL enforces no ``max_length`` on them."""
    if packing == "padding_free":
        return {"padding_free": True, "max_length": None}
    if packing == "packed":
        return {"packing": True, "packing_strategy": "bfd"}  # bfd: whole rows, an overlong row truncated
    return {}


def keep_rows_apart(model, tokenizer, args, packing: str) -> None:
    """Before the trainer is built with ``args`` (an ``SFTConfig``): packing checked on this model, then kept.

    Refuses packing (PackingError) where the model's attention lets packed rows see each other. Where the
    attention is transformers' sdpa it switches to ``loralab.model.row_attention`` first (the same result, row by
    row). Unsloth's CPU backend switches ``padding_free`` and ``packing`` off in ``SFTConfig`` ("SDPA on CPU then
    attends across examples"): the check has just measured that this model keeps the rows apart, so the
    arguments of ``packing`` are set again. (With a KV cache transformers skips its packed-row detection and a
    flattened batch attends across its rows; TRL's ``compute_loss`` runs without one: tests/test_packing.py.)
    """
    if packing == "none":
        return
    use_row_attention(model)
    check_rows_kept_apart(model, tokenizer, packing)
    for name, value in packing_args(packing).items():
        setattr(args, name, value)


def rows_apart_difference(model, tokenizer) -> float:
    """Largest logit difference between two rows run packed (one sequence) and alone, relative to the logits."""
    import torch

    rows = [tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[0] for text in PROBE_ROWS]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # use_cache=False, as in training: with a KV cache transformers skips its packed-row detection
            # (measured: a model prepared for generation mixes the rows, 0.66 of the logits' size)
            alone = [model(input_ids=row[None].to(device), use_cache=False).logits[0].float() for row in rows]
            packed_ids = torch.cat(rows)[None].to(device)
            positions = torch.cat([torch.arange(len(row)) for row in rows])[None].to(device)
            packed = model(input_ids=packed_ids, position_ids=positions, use_cache=False).logits[0].float()
    finally:
        model.train(was_training)
    second = packed[len(rows[0]):]
    return float((second - alone[1]).abs().max() / alone[1].abs().max().clamp_min(1e-6))


def check_rows_kept_apart(model, tokenizer, packing: str) -> None:
    """PackingError when ``packing`` is on and this model's attention lets packed rows see each other."""
    if packing == "none":
        return
    difference = rows_apart_difference(model, tokenizer)
    if difference > TOLERANCE:
        attention = getattr(getattr(model, "config", None), "_attn_implementation", "unknown")
        raise PackingError(
            f"packing: {packing} needs attention that keeps the rows of a batch apart, and this model's "
            f"({attention!r} attention) does not: a row packed after another gets logits {difference:.0%} away from "
            "the same row alone, so every row would attend to the rows before it. Write packing: none, or load the "
            "model with an attention that reads position ids (flash_attention_2, or transformers' sdpa/eager).")
