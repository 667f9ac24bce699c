"""Rewards for GRPO: loralab's scorers as TRL reward functions, and a pre-flight that tries each one.

    from loralab.eval.rewards import reward_functions, preflight_rewards
    rewards = reward_functions(cfg.rewards)          # ParamsError for an unknown name or a bad pattern
    preflight_rewards(rewards, model, tokenizer, rows[0])   # ParamsError, in one line naming the function
    trainer = build_grpo_trainer(model, tokenizer, rows, rewards, cfg, ...)

Each spec of ``cfg.rewards`` is a scorer of ``loralab.eval.scorers`` (``exact_match``, ``contains``,
``regex:PATTERN``, ``json_object``, ``final_number``, ``python:MOD:FUNC``, ...): the scorer becomes a
reward function ``(prompts, completions, reference, **kwargs) -> list[float]`` named by its spec, so TRL
logs each apart (``rewards/<spec>/mean`` and ``/std``) and the held-out prompts are scored with the same
scorers before and after training. A ``python:MOD:FUNC`` whose function takes ``completions`` (TRL's
own reward signature: ``f(completions, **kwargs) -> list[float]``) is used as it is, batch and all.

A reward function that fails is TRL's most silent mistake: it raises deep inside the first training
step, or returns a list of the wrong length, or strings. ``preflight_rewards`` calls every function on
one real completion of the model (the first training prompt, sampled as in training) before the
trainer is built, and refuses one that raises, returns something other than a list of numbers, or
the wrong number of them, in one line naming the function.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from loralab.eval.scorers import Scorer, parse_scorers
from loralab.params.errors import ParamsError


def completion_text(completion) -> str:
    """A TRL completion as text: conversational ``[{"role": "assistant", "content": ...}]`` or plain text."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def _takes_completions(fn: Callable) -> bool:
    """True for TRL's reward signature: a parameter named ``completions`` (a batch, not one reply)."""
    try:
        return "completions" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class ScorerReward:
    """A scorer as a TRL reward function: one number in [0, 1] per completion, against the row's reference."""

    scorer: Scorer
    __name__: str = field(init=False)  # TRL names the logged reward by the function's __name__

    def __post_init__(self) -> None:
        self.__name__ = self.scorer.name

    def __call__(self, prompts=None, completions=(), reference=None, **kwargs) -> list[float]:
        references = reference if reference is not None else [""] * len(completions)
        return [self.scorer(completion_text(c), str(r)) for c, r in zip(completions, references)]


def reward_functions(specs: list[str]) -> list[Callable]:
    """One TRL reward function per spec (``ScorerReward``, or a ``python:`` function of TRL's signature as is).

    ParamsError (``rewards: ...``) for an unknown name, a pattern that does not compile, a checker that
    cannot be imported, or a spec given twice.
    """
    try:
        scorers = parse_scorers(specs)
    except ParamsError as error:
        raise ParamsError(str(error).replace("eval_scorers:", "rewards:", 1)) from None
    out: list[Callable] = []
    for scorer in scorers:
        if scorer.kind == "python" and _takes_completions(scorer.fn):
            fn = scorer.fn
            try:
                fn.__name__ = scorer.name
            except (AttributeError, TypeError):  # a callable object without a settable __name__ keeps its own
                pass
            out.append(fn)
        else:
            out.append(ScorerReward(scorer))
    return out


def reward_name(fn: Callable) -> str:
    """The name TRL logs a reward function under."""
    return getattr(fn, "__name__", type(fn).__name__)


def check_reward_output(name: str, value, expected: int) -> list[float]:
    """``value`` as a list of floats, or ParamsError in one line naming the reward function."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        raise ParamsError(f"reward {name!r} returned {type(value).__name__} ({str(value)[:60]!r}); a reward function "
                          f"returns a list with one number per completion.")
    values = list(value)
    if len(values) != expected:
        raise ParamsError(f"reward {name!r} returned {len(values)} values for {expected} completion(s); a reward "
                          "function returns exactly one number per completion.")
    for item in values:
        not_a_number = isinstance(item, bool) or not isinstance(item, (int, float)) or math.isnan(float(item))
        scalar = hasattr(item, "item") and isinstance(item.item(), (int, float))  # a numpy / torch scalar
        if item is not None and not_a_number and not scalar:
            raise ParamsError(f"reward {name!r} returned {item!r} ({type(item).__name__}) for a completion; a "
                              "reward is a number (or None to skip the completion).")
    return [float(v) if v is not None else math.nan for v in values]


def sample_completion(model, tokenizer, prompt: list[dict], max_new_tokens: int, seed: int = 0,
                      temperature: float = 1.0) -> str:
    """One sampled completion of ``prompt`` (as training samples them), for the pre-flight."""
    import torch

    from loralab.model.loading import for_inference, for_training

    for_inference(model)
    try:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        batch = tokenizer([text], return_tensors="pt", add_special_tokens=False).to(model.device)
        torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=temperature, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        for_training(model)


def preflight_rewards(rewards: list[Callable], row: dict, completion: str) -> dict[str, float]:
    """Call each reward function on one real completion as TRL will; its reward per name, or ParamsError.

    ``row`` is a prompt row (``loralab.data.grpo_prompts``): its columns reach the function as keyword
    arguments, one value per completion, as TRL passes them.
    """
    columns = {key: [value] for key, value in row.items() if key not in ("prompt", "completion")}
    kwargs = {**columns, "trainer_state": None, "log_extra": lambda *a, **k: None,
              "log_metric": lambda *a, **k: None}
    got = {}
    for fn in rewards:
        name = reward_name(fn)
        try:
            value = fn(prompts=[row["prompt"]], completions=[[{"role": "assistant", "content": completion}]],
                       completion_ids=[[]], **kwargs)
        except Exception as error:  # noqa: BLE001  the user's function: refused in one line, before training
            message = " ".join(str(error).split())[:160]
            raise ParamsError(f"reward {name!r} raised {type(error).__name__} ({message}) on a real completion of the "
                              "first training prompt; fix it to return one number per completion.") from None
        got[name] = check_reward_output(name, value, expected=1)[0]
    return got


def rewards_of(rewards: list[Callable], rows: list[dict], replies: list[str]) -> dict[str, list[float]]:
    """Each reward function's value for each (row, reply), as TRL calls it (the rows' columns as keywords).

    A function that raises here scores 0 on the whole batch (the pre-flight already refused one that
    raises on a real completion); a missing value (None) counts 0.
    """
    columns = {key: [row.get(key) for row in rows] for key in rows[0] if key not in ("prompt", "completion")} \
        if rows else {}
    kwargs = {**columns, "trainer_state": None, "log_extra": lambda *a, **k: None, "log_metric": lambda *a, **k: None}
    out = {}
    for fn in rewards:
        try:
            values = fn(prompts=[row["prompt"] for row in rows],
                        completions=[[{"role": "assistant", "content": r}] for r in replies],
                        completion_ids=[[] for _ in replies], **kwargs)
            values = check_reward_output(reward_name(fn), values, expected=len(replies))
        except Exception:  # noqa: BLE001  scored 0, as score_replies does for a failing scorer
            values = [0.0] * len(replies)
        out[reward_name(fn)] = [0.0 if math.isnan(v) else v for v in values]
    return out


@dataclass
class HeldOutRewards:
    """Greedy replies to held-out prompts and each reward's mean over them (``total``: the weighted sum)."""

    label: str
    scores: dict[str, float]
    total: float
    replies: list[str]
    per_row: list[dict[str, float]]

    def summary(self) -> str:
        """One line: each reward's mean and the weighted total."""
        parts = ", ".join(f"{name} {value:.2f}" for name, value in self.scores.items())
        return f"{self.label}: reward {self.total:.2f} ({parts}) on {len(self.replies)} held-out prompts"


def score_heldout(model, tokenizer, rows: list[dict], rewards: list[Callable], weights: list[float],
                  max_new_tokens: int, label: str) -> HeldOutRewards:
    """Greedy replies to the held-out prompt rows, scored by the training rewards (same weights)."""
    from loralab.model.generation import generate_replies

    replies = generate_replies(model, tokenizer, [row["prompt"] for row in rows], max_new_tokens) if rows else []
    values = rewards_of(rewards, rows, replies) if rows else {reward_name(fn): [] for fn in rewards}
    n = len(replies)
    scores = {name: (sum(v) / n if n else 0.0) for name, v in values.items()}
    total = sum(w * s for w, s in zip(weights, scores.values()))
    per_row = [{name: v[i] for name, v in values.items()} for i in range(n)]
    return HeldOutRewards(label, scores, total, replies, per_row)
