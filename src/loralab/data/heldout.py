"""The held-out split: rows the model never trains on, chosen by the params, with leaked rows removed.

    from loralab.data.heldout import load_splits
    splits = load_splits(cfg)         # splits.train, splits.eval (chat rows), splits.leaked, splits.note
    print(splits.note)                # "263 training rows, 69 held-out rows (embedded/json-answers[eval]) ..."

The held-out rows come from ``eval_dataset`` (a local file, ``embedded/<name>``, or a hub dataset
with ``eval_split``, its columns mapped as the training rows' are: ``loralab.data.column_map``) or from ``eval_fraction`` of the training rows, picked with the run's seed
(the same params always hold out the same rows). Rows are compared by content (every turn's role
and text, after normalisation): a held-out row that also appears among the training rows is
removed from the held-out split and reported, so a score is never inflated by a row the model was
trained on.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field

from loralab.data.chat_rows import DatasetError, load_chat_rows
from loralab.data.column_map import ColumnMap, column_map_of
from loralab.data.sources import is_local_data_file
from loralab.params.names import is_embedded
from loralab.params.run_config import RunConfig

EXAMPLES_SHOWN = 3  # leaked rows quoted in the note


def row_key(row: dict) -> str:
    """The content of a chat row as one string: equal for rows with the same turns, whatever else they hold."""
    turns = [(m["role"], " ".join(m["content"].split())) for m in row["messages"]]
    return json.dumps(turns, ensure_ascii=False)


def default_eval_split(eval_dataset: str) -> str:
    """The held-out split a dataset name means when ``eval_split`` is '': eval (embedded) or test (hub)."""
    return "eval" if is_embedded(eval_dataset) else "test"


def eval_source(eval_dataset: str, eval_split: str = "") -> tuple[str, str]:
    """(the split ``eval_split`` means, how a note names the held-out rows): a file is its own split."""
    split = eval_split or default_eval_split(eval_dataset)
    return split, eval_dataset if is_local_data_file(eval_dataset) else f"{eval_dataset}[{split}]"


@dataclass
class Splits:
    """Training rows and held-out rows of one run, after leaked rows were removed."""

    train: list[dict]
    eval: list[dict]
    source: str  # where the held-out rows came from, e.g. "embedded/json-answers[eval]" or "5% of the training rows"
    leaked: list[dict] = field(default_factory=list)  # held-out rows removed because training holds them too

    @property
    def note(self) -> str:
        """One paragraph for the notebook: how many rows each side has, and what was removed."""
        text = f"{len(self.train)} training rows, {len(self.eval)} held-out rows ({self.source})."
        if not self.eval and not self.leaked:
            return text + " No held-out split: only the training loss is measured."
        if self.leaked:
            shown = "; ".join(_prompt_text(r) for r in self.leaked[:EXAMPLES_SHOWN])
            text += (f" Removed {len(self.leaked)} held-out row(s) that also appear among the training rows "
                     f"(they would inflate every score), e.g.: {shown}")
        return text


def _prompt_text(row: dict, limit: int = 80) -> str:
    text = " ".join(row["messages"][-2]["content"].split()) if len(row["messages"]) > 1 else ""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def remove_leaked(train: list[dict], held_out: list[dict]) -> tuple[list[dict], list[dict]]:
    """(held-out rows not in ``train``, the removed ones), compared by content."""
    seen = {row_key(row) for row in train}
    kept, leaked = [], []
    for row in held_out:
        (leaked if row_key(row) in seen else kept).append(row)
    return kept, leaked


def carve_fraction(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows): ``fraction`` of ``rows`` picked with ``seed``, order kept on both sides."""
    n_eval = max(1, math.ceil(len(rows) * fraction))
    if n_eval >= len(rows):
        raise DatasetError(f"eval_fraction: {fraction:g} of {len(rows)} rows leaves no training rows; use a smaller "
                           "eval_fraction, more rows, or a separate eval_dataset.")
    picked = set(random.Random(seed).sample(range(len(rows)), n_eval))
    return ([r for i, r in enumerate(rows) if i not in picked], [r for i, r in enumerate(rows) if i in picked])


def load_eval_rows(eval_dataset: str, eval_split: str = "", columns: ColumnMap | None = None) -> list[dict]:
    """Held-out rows of ``eval_dataset`` (its default held-out split when ``eval_split`` is ''), mapped by
    ``columns`` as the training rows are."""
    split = eval_split or default_eval_split(eval_dataset)
    try:
        return load_chat_rows(eval_dataset, split, columns)
    except ValueError as error:  # datasets: Unknown split "validation". Should be one of ['train', 'test'].
        if isinstance(error, DatasetError) or "split" not in str(error).lower():
            raise
        raise DatasetError(f"eval_split: {eval_dataset!r} has no split {split!r} ({error}); write eval_split as "
                           "one of its splits, or a slice such as train[-200:].") from None


def load_splits(cfg: RunConfig, train_rows: list[dict] | None = None) -> Splits:
    """Training and held-out rows as the params choose them; ``train_rows`` skips loading the training set."""
    columns = column_map_of(cfg)
    train = train_rows if train_rows is not None else load_chat_rows(cfg.dataset, cfg.dataset_split, columns)
    if cfg.eval_fraction:
        train, held_out = carve_fraction(train, cfg.eval_fraction, cfg.seed)
        source = f"{cfg.eval_fraction:.0%} of the training rows, seed {cfg.seed}"
    elif cfg.eval_dataset:
        held_out = load_eval_rows(cfg.eval_dataset, cfg.eval_split, columns)
        _, source = eval_source(cfg.eval_dataset, cfg.eval_split)
    else:
        return Splits(train, [], "none")
    kept, leaked = remove_leaked(train, held_out)
    if not kept:
        raise DatasetError(f"the held-out split ({source}) has no usable rows: all {len(held_out)} also appear "
                           "among the training rows. Use held-out rows the model does not train on.")
    return Splits(train, kept, source, leaked)
