"""Everything evaluation needs, checked before any model loads: the rows on both sides and the scorers.

    from loralab.eval.prepare import prepare_run_data
    data = prepare_run_data(cfg)      # DatasetError / ParamsError here, before load_model
    print(data.note)                  # rows on each side, leaked rows removed, scorers, retention tasks
    data.train, data.eval, data.prompts_rows, data.scorers

The scorers are parsed (unknown name, pattern that does not compile, checker that cannot be
imported) and tried on the first held-out row (a checker that raises there, a pattern the reference
answer itself does not match), so a mistake costs a second, not a model load and a training run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loralab.data.heldout import Splits, load_splits
from loralab.eval.scorers import Scorer, check_on_first_row, parse_scorers
from loralab.params.run_config import RunConfig


def reference(row: dict) -> str:
    """The answer a held-out row expects: its last assistant turn."""
    return row["messages"][-1]["content"]


@dataclass
class RunData:
    """Training rows, held-out rows and the scorers of one run, ready before the model loads."""

    splits: Splits
    scorers: list[Scorer]
    eval_examples: int
    retention_tasks: tuple[str, ...] = ()
    scorers_hint: str | None = None  # the user's own data left without scorers: which ones may fit

    @property
    def train(self) -> list[dict]:
        return self.splits.train

    @property
    def eval(self) -> list[dict]:
        return self.splits.eval

    @property
    def scored_rows(self) -> list[dict]:
        """The held-out rows whose prompts are answered and scored (the first ``eval_examples``)."""
        return self.splits.eval[: self.eval_examples] if self.scorers else []

    @property
    def note(self) -> str:
        scorers = ", ".join(s.name for s in self.scorers) or "none (held-out loss only)"
        text = self.splits.note
        if self.eval:
            text += f" Scorers on {len(self.scored_rows)} held-out prompts: {scorers}."
        if self.scorers_hint:
            text += f"\n{self.scorers_hint}"
        if self.retention_tasks:
            text += f" Retention (lm-evaluation-harness) before and after: {', '.join(self.retention_tasks)}."
        return text


def check_scorers_on(scorers: list[Scorer], rows: list[dict], source: str) -> None:
    """Try the scorers on the first held-out row (ParamsError naming the scorer and the row)."""
    if scorers and rows:
        check_on_first_row(scorers, reference(rows[0]), f"the first held-out row of {source}")


def prepare_run_data(cfg: RunConfig, train_rows: list[dict] | None = None) -> RunData:
    """Load and split the rows, parse and try the scorers, look up the retention tasks; every error says
    which parameter to fix."""
    from loralab.eval.retention import check_retention_tasks

    scorers = parse_scorers(cfg.eval_scorers)
    check_retention_tasks(cfg.retention_tasks)
    splits = load_splits(cfg, train_rows)
    check_scorers_on(scorers, splits.eval, splits.source)
    return RunData(splits, scorers, cfg.eval_examples, tuple(cfg.retention_tasks), cfg.scorers_hint)


@dataclass
class PreferenceData:
    """Training rows (in the method's format), held-out pairs and scorers of one preference run."""

    train: list[dict]
    eval_pairs: list[dict]
    scorers: list[Scorer]
    eval_examples: int
    source: str
    leaked: list[dict]
    scorers_hint: str | None = None  # the user's own pairs left without scorers: which ones may fit

    @property
    def scored_rows(self) -> list[dict]:
        """Held-out prompts as chat rows whose reference is the chosen answer (the first ``eval_examples``)."""
        pairs = self.eval_pairs[: self.eval_examples] if self.scorers else []
        return [{"messages": pair["prompt"] + pair["chosen"]} for pair in pairs]

    @property
    def note(self) -> str:
        text = f"{len(self.train)} training rows, {len(self.eval_pairs)} held-out pairs ({self.source})."
        if self.leaked:
            text += (f" Removed {len(self.leaked)} held-out pair(s) whose prompt is also a training prompt "
                     "(they would inflate every score).")
        if self.scorers:
            text += f" Scorers on {len(self.scored_rows)} held-out prompts: {', '.join(s.name for s in self.scorers)}."
        if self.scorers_hint:
            text += f"\n{self.scorers_hint}"
        return text


def prepare_preference_data(cfg) -> PreferenceData:
    """Notebook 04's rows, held-out pairs (no prompt shared with training), scorers and SFT adapter, checked.

    Everything here runs before any model loads: the rows of both files, the scorers on the first
    held-out pair, the retention tasks, and the SFT adapter's manifest against its base (a different base is refused).
    """
    from loralab.data.column_map import column_map_of
    from loralab.data.heldout import eval_source, row_key
    from loralab.data.preference_rows import load_preference_rows
    from loralab.eval.retention import check_retention_tasks

    scorers = parse_scorers(cfg.eval_scorers)
    check_retention_tasks(cfg.retention_tasks)
    columns = column_map_of(cfg)
    train = load_preference_rows(cfg.dataset, cfg.dataset_split, cfg.method, columns)
    pairs, leaked, source = [], [], "none"
    if cfg.eval_dataset:
        split, source = eval_source(cfg.eval_dataset, cfg.eval_split)
        held_out = load_preference_rows(cfg.eval_dataset, split, "dpo", columns)
        seen = {row_key({"messages": row["prompt"]}) for row in train}
        for pair in held_out:
            (leaked if row_key({"messages": pair["prompt"]}) in seen else pairs).append(pair)
        if not pairs:
            from loralab.data.chat_rows import DatasetError

            raise DatasetError(f"the held-out pairs ({source}) have no usable rows: every prompt is also a "
                               "training prompt. Hold out prompts the model does not train on.")
    if cfg.sft_adapter:
        from loralab.adapters.verified_loading import check_adapter_base

        if not (Path(cfg.sft_adapter) / "adapter_config.json").is_file():
            from loralab.params.errors import ParamsError

            raise ParamsError(f"sft_adapter: {cfg.sft_adapter} is not an adapter folder (no adapter_config.json); "
                              "give runs/<run>/adapter from notebook 01, or '' to start from the base model.")
        check_adapter_base(cfg.sft_adapter, cfg.model_name, cfg.load_in_4bit)
    data = PreferenceData(train, pairs, scorers, cfg.eval_examples, source, leaked, cfg.scorers_hint)
    if data.scored_rows:
        check_scorers_on(scorers, data.scored_rows, source)
    return data
