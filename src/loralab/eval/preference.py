"""Preference metrics on held-out pairs: does the policy rank the chosen answer above the rejected one?

    from loralab.eval.preference import preference_metrics
    before = preference_metrics(model, tokenizer, eval_pairs, beta=cfg.beta)   # before training
    ...
    after = preference_metrics(model, tokenizer, eval_pairs, beta=cfg.beta)
    after.accuracy, after.margin, after.logps_chosen, after.logps_rejected

Each pair's implicit reward is DPO's: ``beta * (log p_policy(answer) - log p_reference(answer))``,
summed over the answer tokens (teacher-forced, the prompt through the chat template), with the
reference being where training started: the base with the adapter switched off, or the frozen ``ref``
copy of the SFT adapter. The same definition is used for DPO, ORPO and KTO runs, so they compare.

* ``accuracy``: share of pairs whose chosen answer gets the higher reward; a tie counts 1/2. Before
  training the policy is the reference, every pair ties, and the accuracy is 0.5 by definition.
* ``margin``: mean reward of chosen minus rejected.
* ``logps_chosen`` / ``logps_rejected``: mean log-probability of each answer under the policy, shown
  separately because a known failure of DPO is that both fall while the margin grows.
* ``ref_logps_chosen`` / ``ref_logps_rejected``: the same under the reference; they must not move during
  training (``reference_unchanged`` compares two measurements).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

from loralab.train.preference_trainer import REFERENCE_ADAPTER

TIE = 1e-6  # rewards closer than this are a tie


@dataclass
class PreferenceScores:
    """Preference metrics of one model on held-out pairs (see the module docstring)."""

    accuracy: float
    margin: float
    logps_chosen: float
    logps_rejected: float
    ref_logps_chosen: float
    ref_logps_rejected: float
    pairs: int
    ref_logps: list[float]  # per pair and side, for reference_unchanged

    def as_metrics(self, when: str) -> dict[str, float]:
        """``{"preference_accuracy_before": ..., ...}`` for metrics.json."""
        return {f"preference_{k}_{when}": v for k, v in asdict(self).items() if k not in ("ref_logps", "pairs")}


@contextlib.contextmanager
def reference(model):
    """The model as the reference: the frozen ``ref`` adapter when there is one, else the adapter switched off."""
    config = getattr(model, "peft_config", {})
    if REFERENCE_ADAPTER in config:
        active = model.active_adapter
        model.set_adapter(REFERENCE_ADAPTER)
        try:
            yield model
        finally:
            model.set_adapter(active)
    elif config:
        with model.disable_adapter():
            yield model
    else:
        raise ValueError("preference metrics need a PEFT model: the reference is the model without its adapter")


def answer_logps(model, tokenizer, prompts: list[list[dict]], answers: list[list[dict]],
                 batch_size: int = 8) -> list[float]:
    """Sum of log-probabilities of each answer's tokens after its chat prompt (teacher-forced, no grad).

    The logits are computed only where a row of the batch predicts an answer token (``logits_to_keep``
    with those positions): the prompt's positions would cost a vocabulary-wide projection each and are
    never read. On the embedded preference pairs that is about half of the positions.
    """
    import torch
    from trl.trainer.utils import selective_log_softmax

    sequences = []
    for prompt, answer in zip(prompts, answers):
        prompt_ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
        full_ids = tokenizer.apply_chat_template(prompt + answer, tokenize=True)
        prompt_ids = list(getattr(prompt_ids, "input_ids", prompt_ids))
        full_ids = list(getattr(full_ids, "input_ids", full_ids))
        if full_ids[: len(prompt_ids)] != prompt_ids:
            raise ValueError("the chat template renders the prompt differently inside the conversation")
        sequences.append((full_ids, len(prompt_ids)))
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[float] = []
    try:
        for start in range(0, len(sequences), batch_size):
            batch = sequences[start:start + batch_size]
            width = max(len(ids) for ids, _ in batch)
            first = min(prompt_len for _, prompt_len in batch) - 1  # the first position that predicts an answer token
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, (seq, _) in enumerate(batch):
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
            with torch.no_grad():
                logits = _answer_logits(model, ids.to(model.device), mask.to(model.device), first).float()
            logps = selective_log_softmax(logits, ids[:, first + 1:].to(logits.device))
            for row, (seq, prompt_len) in enumerate(batch):
                out.append(float(logps[row, prompt_len - 1 - first: len(seq) - 1 - first].sum()))
    finally:
        model.train(was_training)
    return out


def _answer_logits(model, ids, mask, first: int):
    """The logits at positions ``first`` .. width-2 of the batch: only those computed where the model's forward
    takes ``logits_to_keep`` (transformers' causal LMs), all of them sliced where it does not (remote code)."""
    import torch

    width = ids.shape[1]
    try:
        logits = model(input_ids=ids, attention_mask=mask,
                       logits_to_keep=torch.arange(first, width - 1, device=ids.device)).logits
    except TypeError:  # a forward without logits_to_keep
        logits = model(input_ids=ids, attention_mask=mask).logits
    return logits[:, first:width - 1] if logits.shape[1] == width else logits


def preference_metrics(model, tokenizer, pairs: list[dict], beta: float, batch_size: int = 8) -> PreferenceScores:
    """Preference accuracy, mean margin and log-probs of ``pairs`` (normalised prompt/chosen/rejected rows)."""
    prompts = [p["prompt"] for p in pairs] * 2
    answers = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    policy = answer_logps(model, tokenizer, prompts, answers, batch_size)
    with reference(model):
        ref = answer_logps(model, tokenizer, prompts, answers, batch_size)
    n = len(pairs)
    wins = 0.0
    margins = []
    for i in range(n):
        chosen = beta * (policy[i] - ref[i])
        rejected = beta * (policy[n + i] - ref[n + i])
        margins.append(chosen - rejected)
        wins += 0.5 if abs(chosen - rejected) <= TIE else float(chosen > rejected)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    return PreferenceScores(accuracy=wins / n if n else 0.0, margin=mean(margins), logps_chosen=mean(policy[:n]),
                            logps_rejected=mean(policy[n:]), ref_logps_chosen=mean(ref[:n]),
                            ref_logps_rejected=mean(ref[n:]), pairs=n, ref_logps=ref)


def reference_unchanged(before: PreferenceScores, after: PreferenceScores) -> float:
    """Largest change of any reference log-prob between two measurements (0.0: the reference did not move)."""
    return max((abs(a - b) for a, b in zip(before.ref_logps, after.ref_logps)), default=0.0)
