"""Everything notebook 05 needs before any model loads: prompt rows, held-out prompts, rewards, SFT adapter.

    from loralab.eval.grpo_data import prepare_grpo_data
    data = prepare_grpo_data(cfg)      # DatasetError / ParamsError here, before load_model
    print(data.note)                   # prompts on each side, leaked prompts removed, rewards
    data.train, data.heldout, data.rewards

The rewards are parsed here (unknown name, pattern that does not compile, checker that cannot be
imported); each is then tried on a real completion once the model is loaded
(``loralab.eval.rewards.preflight_rewards``). Held-out prompts that are also training prompts are
removed (they would inflate the held-out reward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from loralab.data.chat_rows import DatasetError
from loralab.data.grpo_prompts import load_prompt_rows
from loralab.data.heldout import eval_source, row_key
from loralab.eval.rewards import reward_functions, reward_name
from loralab.params.errors import ParamsError
from loralab.params.grpo_config import GrpoConfig


@dataclass
class GrpoData:
    """Training prompts, held-out prompts and reward functions of one GRPO run."""

    train: list[dict]
    heldout: list[dict]  # the first eval_examples held-out prompts: scored before and after training
    rewards: list[Callable]
    weights: list[float]
    source: str
    leaked: int = 0
    notes: list[str] = field(default_factory=list)

    def with_rewards(self, functions: list[Callable]) -> GrpoData:
        """These rewards and ``functions`` (reward functions with TRL's signature, e.g. defined in a notebook
        cell), each of those with weight 1."""
        return replace(self, rewards=[*self.rewards, *functions], weights=[*self.weights, *[1.0] * len(functions)])

    @property
    def reward_names(self) -> list[str]:
        return [reward_name(fn) for fn in self.rewards]

    @property
    def note(self) -> str:
        rewards = ", ".join(f"{name} (x{w:g})" for name, w in zip(self.reward_names, self.weights))
        text = f"{len(self.train)} training prompts, {len(self.heldout)} held-out prompts ({self.source}). Rewards: {rewards}."
        if self.leaked:
            text += f" Removed {self.leaked} held-out prompt(s) that are also training prompts."
        return text


def prepare_grpo_data(cfg: GrpoConfig) -> GrpoData:
    """Notebook 05's prompt rows, held-out prompts (none shared with training), rewards and SFT adapter, checked."""
    rewards = reward_functions(cfg.rewards)
    train = load_prompt_rows(cfg.dataset, cfg.dataset_split, cfg.prompt_column, cfg.reference_column,
                             cfg.dataset_config)
    heldout, leaked, source = [], 0, "none"
    if cfg.eval_dataset:
        split, source = eval_source(cfg.eval_dataset, cfg.eval_split)
        rows = load_prompt_rows(cfg.eval_dataset, split, cfg.prompt_column, cfg.reference_column,
                                cfg.dataset_config)
        seen = {row_key({"messages": row["prompt"]}) for row in train}
        kept = [row for row in rows if row_key({"messages": row["prompt"]}) not in seen]
        leaked = len(rows) - len(kept)
        if not kept:
            raise DatasetError(f"the held-out prompts ({source}) are all training prompts too: "
                               "hold out prompts the model does not train on.")
        heldout = kept[: cfg.eval_examples]
    if cfg.sft_adapter:
        from loralab.adapters.verified_loading import check_adapter_base

        if not (Path(cfg.sft_adapter) / "adapter_config.json").is_file():
            raise ParamsError(f"sft_adapter: {cfg.sft_adapter} is not an adapter folder (no adapter_config.json); "
                              "give runs/<run>/adapter from notebook 01, or '' to start from the base model.")
        check_adapter_base(cfg.sft_adapter, cfg.model_name, cfg.load_in_4bit)
    return GrpoData(train, heldout, rewards, cfg.reward_weight_list, source, leaked)
