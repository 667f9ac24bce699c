"""Everything evaluation needs, checked before any model loads: the rows on both sides and the scorers.

    from loralab.eval.prepare import prepare_run_data
    data = prepare_run_data(cfg)      # DatasetError / ParamsError here, before load_model
    print(data.note)                  # rows on each side, leaked rows removed, scorers
    data.train, data.eval, data.prompts_rows, data.scorers

The scorers are parsed (unknown name, pattern that does not compile, checker that cannot be
imported) and tried on the first held-out row (a checker that raises there, a pattern the reference
answer itself does not match), so a mistake costs a second, not a model load and a training run.
"""

from __future__ import annotations

from dataclasses import dataclass

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
        return text


def check_scorers_on(scorers: list[Scorer], rows: list[dict], source: str) -> None:
    """Try the scorers on the first held-out row (ParamsError naming the scorer and the row)."""
    if scorers and rows:
        check_on_first_row(scorers, reference(rows[0]), f"the first held-out row of {source}")


def prepare_run_data(cfg: RunConfig, train_rows: list[dict] | None = None) -> RunData:
    """Load and split the rows, parse and try the scorers; every error says which parameter to fix."""
    scorers = parse_scorers(cfg.eval_scorers)
    splits = load_splits(cfg, train_rows)
    check_scorers_on(scorers, splits.eval, splits.source)
    return RunData(splits, scorers, cfg.eval_examples)
