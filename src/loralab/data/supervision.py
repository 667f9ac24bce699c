"""Which tokens the model trains on: the supervised (loss) tokens of every row, counted and checked before training.

    from loralab.data.supervision import check_supervision
    rows, supervision = check_supervision(rows, tokenizer, cfg.max_seq_length)   # DatasetError: nothing to learn
    print(supervision.message)   # "answers are 21% of the 9,312 tokens trained on (per row: min 9%, median 20%) ..."
    train_dataset = supervised_dataset(rows, tokenizer, cfg.max_seq_length)   # what SFTTrainer trains on
    supervision.metrics()        # what metrics.json records under "supervision"

Each row is tokenized exactly as TRL 1.15's ``SFTTrainer`` tokenizes a conversational prompt/completion row
(``completion_only_loss``): the prompt with the generation prompt, the whole conversation, the answer starting
where the two token lists diverge (``trl.data_utils.common_prefix_length``), then cut at ``max_seq_length``
from the right. loralab's three batch layouts all cut there: ``none`` and ``padding_free`` through TRL's
truncation, ``packed`` through best-fit-decreasing packing, which truncates an over-long row to the same
length (``loralab.train.packing``). Only the tokenizer is needed: no model weights (``loralab run --check``
runs it too, with ``loralab.data.template_tokenizer``: no torch). ``tests/test_supervision.py`` checks the result against the trainer's own tokenized dataset.

Three ways a run would learn nothing, or never learn to stop, are refused in one line (``SupervisionError``):

- every answer is cut away (``max_seq_length`` shorter than every prompt) or swallowed by the template;
- the chat template puts no end-of-turn token after the answer (ChatML's ``<|im_end|>``, Llama 3's
  ``<|eot_id|>``...): the adapter would never learn to stop, and the exported model rambles;
- the template has one, but no answer keeps it (``max_seq_length`` cuts the end off every answer).

A few rows with no answer token left are dropped and counted (TRL drops them too); answers whose end is cut
are counted (``overlong_rows: truncate`` keeps them on purpose).
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loralab.data.errors import DatasetError

_PROBE_ANSWER = "Zq7 probe answer"


class SupervisionError(DatasetError):
    """Training would learn nothing (no answer token left) or never learn to stop (no end-of-turn token)."""


@dataclass(frozen=True)
class RowTokens:
    """One row as the trainer sees it: token ids and the loss mask (1 on the answer), after truncation."""

    input_ids: list[int]
    completion_mask: list[int]
    prompt_tokens: int  # tokens before the answer starts (before truncation)
    full_tokens: int  # the whole conversation (before truncation)

    @property
    def supervised(self) -> int:
        return sum(self.completion_mask)


def _ids(tokenizer, messages: list[dict], generation_prompt: bool = False) -> list[int]:
    return list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                              add_generation_prompt=generation_prompt)["input_ids"])


def row_tokens(messages: list[dict], tokenizer, max_seq_length: int | None) -> RowTokens:
    """``input_ids`` and ``completion_mask`` of one chat row, as TRL's SFTTrainer builds them (see the docstring)."""
    prompt, full = _ids(tokenizer, messages[:-1], generation_prompt=True), _ids(tokenizer, messages)
    start = 0
    while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
        start += 1
    mask = [0] * start + [1] * (len(full) - start)
    cut = slice(None, max_seq_length)
    return RowTokens(full[cut], mask[cut], start, len(full))


def _special_strings(tokenizer) -> list[str]:
    """Text of the tokenizer's special and added tokens, longest first (so ``<|im_end|>`` beats ``<``)."""
    names = set(getattr(tokenizer, "all_special_tokens", []) or []) | set(tokenizer.get_added_vocab())
    return sorted((n for n in names if n), key=len, reverse=True)


def end_of_turn_token(tokenizer) -> str | None:
    """The token the chat template writes right after an assistant answer (``<|im_end|>`` for ChatML), or None.

    Found by rendering a one-turn conversation with a probe answer: the first special (or added) token after
    the answer's text. None: the template ends the answer with plain text, so the model never learns to stop.
    """
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": _PROBE_ANSWER}], tokenize=False)
    at = text.rfind(_PROBE_ANSWER)
    if at < 0:
        return None
    after = text[at + len(_PROBE_ANSWER):]
    found = [(after.find(name), name) for name in _special_strings(tokenizer) if name in after]
    return min(found)[1] if found else None


def _template_tail(tokenizer) -> str:
    """What the chat template writes after an answer (for the refusal message)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": _PROBE_ANSWER}], tokenize=False)
    at = text.rfind(_PROBE_ANSWER)
    return text[at + len(_PROBE_ANSWER):] if at >= 0 else ""


def ends_with(tokens: RowTokens, token_id: int | None, tokenizer) -> bool:
    """True when the last supervised token that is not whitespace is ``token_id`` (the answer's end is learned)."""
    if token_id is None:
        return False
    for token, supervised in zip(reversed(tokens.input_ids), reversed(tokens.completion_mask), strict=True):
        if not supervised:
            return False
        if token == token_id:
            return True
        if tokenizer.decode([token]).strip():
            return False
    return False


def _span(numbers: list[int]) -> str:
    low, high = min(numbers), max(numbers)
    return f"{low}" if low == high else f"{low}-{high}"


def _rows(indices: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i + 1) for i in indices[:limit])
    return shown + (f" (and {len(indices) - limit} more)" if len(indices) > limit else "")


@dataclass
class SupervisionReport:
    """The supervised tokens of the training rows as the trainer sees them, and what was dropped."""

    max_seq_length: int | None
    end_of_turn: str | None
    tokens: list[RowTokens]
    dropped: list[int] = field(default_factory=list)  # rows with no answer token left (indices, from 0)
    without_end: list[int] = field(default_factory=list)  # kept rows whose answer lost its end-of-turn token
    unit: str = "row"  # "answer" for preference data: each chosen / rejected / KTO answer with its prompt

    @property
    def kept(self) -> list[RowTokens]:
        dropped = set(self.dropped)
        return [row for i, row in enumerate(self.tokens) if i not in dropped]

    @property
    def row_shares(self) -> list[float]:
        return [row.supervised / len(row.input_ids) for row in self.kept if row.input_ids]

    @property
    def share(self) -> float:
        total = sum(len(row.input_ids) for row in self.kept)
        return sum(row.supervised for row in self.kept) / total if total else 0.0

    def metrics(self) -> dict[str, Any]:
        """What metrics.json records under ``supervision`` (docs/run-folder.md)."""
        shares = self.row_shares
        kept = self.kept
        return {
            "rows": len(kept),
            "tokens": sum(len(row.input_ids) for row in kept),
            "supervised_tokens": sum(row.supervised for row in kept),
            "supervised_share": round(self.share, 4),
            "supervised_share_row_min": round(min(shares), 4) if shares else None,
            "supervised_share_row_median": round(statistics.median(shares), 4) if shares else None,
            "rows_dropped_no_answer_token": len(self.dropped),
            "answers_without_end_of_turn": len(self.without_end),
            "end_of_turn_token": self.end_of_turn,
            "max_seq_length": self.max_seq_length,
        }

    @property
    def message(self) -> str:
        m = self.metrics()
        shares = (f" (per {self.unit}: min {m['supervised_share_row_min']:.0%}, median {m['supervised_share_row_median']:.0%})"
                  if self.row_shares else "")
        text = (f"the loss is computed on {m['supervised_tokens']:,} answer tokens, {self.share:.0%} of the "
                f"{m['tokens']:,} tokens of {m['rows']} {self.unit}s{shares}; ")
        if self.without_end:
            text += (f"{len(self.without_end)} answer(s) lose their end-of-turn token {self.end_of_turn!r} to "
                     f"max_seq_length={self.max_seq_length} ({self.unit}s {_rows(self.without_end)}), so their end is not learned")
        else:
            text += f"every answer ends with the end-of-turn token {self.end_of_turn!r}"
        if self.dropped:
            text += (f"; dropped {len(self.dropped)} {self.unit}(s) with no answer token left after max_seq_length="
                     f"{self.max_seq_length} ({self.unit}s {_rows(self.dropped)})")
        return text + "."


def supervision_report(rows: list[dict], tokenizer, max_seq_length: int | None, unit: str = "row") -> SupervisionReport:
    """Count the supervised tokens of ``rows`` (chat rows) as the trainer will see them; refuses nothing."""
    eot = end_of_turn_token(tokenizer)
    eot_id = tokenizer.convert_tokens_to_ids(eot) if eot is not None else None
    tokens = [row_tokens(row["messages"], tokenizer, max_seq_length) for row in rows]
    report = SupervisionReport(max_seq_length, eot, tokens, unit=unit)
    report.dropped = [i for i, row in enumerate(tokens) if row.supervised == 0]
    dropped = set(report.dropped)
    report.without_end = [i for i, row in enumerate(tokens) if i not in dropped and not ends_with(row, eot_id, tokenizer)]
    return report


def refusal(report: SupervisionReport, tokenizer, what: str = "answer") -> str | None:
    """The one line that stops the run, or None when there is something to learn and the answers end."""
    tokens, limit = report.tokens, report.max_seq_length
    if tokens and len(report.dropped) == len(tokens):
        swallowed = [row for row in tokens if row.prompt_tokens >= row.full_tokens]
        if len(swallowed) == len(tokens):
            return (f"no row has a single {what} token to learn: the chat template renders the prompt alone as the "
                    f"whole conversation, so the {what} is swallowed by the template. Use a chat template that "
                    f"writes the assistant's {what} after the generation prompt.")
        prompts = [row.prompt_tokens for row in tokens]
        return (f"every {what} is cut away by max_seq_length={limit}: the prompts take {_span(prompts)} tokens, so "
                f"no {what} token is left to learn. Raise max_seq_length (the longest row has "
                f"{max(row.full_tokens for row in tokens)} tokens) or shorten the prompts.")
    if tokens and report.end_of_turn is None:
        tail = _template_tail(tokenizer)
        return (f"the chat template puts no end-of-turn token after the assistant's {what} (it writes {tail!r} after "
                f"it), so the model never learns to stop and the exported model rambles. Use a chat template that "
                f"closes each {what} with a special token, such as ChatML's <|im_end|> or the tokenizer's eos_token "
                f"{getattr(tokenizer, 'eos_token', None)!r}.")
    kept = len(tokens) - len(report.dropped)
    if kept and len(report.without_end) == kept:
        lengths = [row.full_tokens for i, row in enumerate(tokens) if i not in set(report.dropped)]
        return (f"no {what} keeps its end-of-turn token {report.end_of_turn!r}: max_seq_length={limit} cuts the end "
                f"off every one (the rows take {_span(lengths)} tokens), so the model never learns to stop. "
                "Raise max_seq_length or shorten the rows.")
    return None


def check_supervision(rows: list[dict], tokenizer, max_seq_length: int | None) -> tuple[list[dict], SupervisionReport]:
    """The rows left to train on (rows with no answer token dropped) and the report; SupervisionError stops the run."""
    report = supervision_report(rows, tokenizer, max_seq_length)
    problem = refusal(report, tokenizer)
    if problem:
        raise SupervisionError(problem)
    dropped = set(report.dropped)
    return [row for i, row in enumerate(rows) if i not in dropped], report


def supervised_dataset(rows: list[dict], tokenizer, max_seq_length: int | None):
    """The rows as the trainer takes them: a ``datasets.Dataset`` of ``input_ids`` and ``completion_mask``.

    Tokenized and cut at ``max_seq_length`` as TRL would (``row_tokens``), so TRL trains on exactly the tokens
    ``supervision_view`` shows, in every batch layout (padding-free batches included, where TRL itself does not
    truncate). Rows with no answer token left are left out (they add nothing to the loss).
    """
    from datasets import Dataset

    tokens = (row_tokens(row["messages"], tokenizer, max_seq_length) for row in rows)
    return Dataset.from_list([{"input_ids": t.input_ids, "completion_mask": t.completion_mask}
                              for t in tokens if t.supervised])


def local_tokenizer_folder(model_name: str) -> Path | None:
    """The folder whose tokenizer a run of ``model_name`` loads, when it is on this machine without a download.

    Embedded models once built (``python -m loralab.model``), and local model folders; None for a hub id.
    """
    from loralab.model.embedded import cache_dir
    from loralab.params.names import embedded_short_name, is_embedded

    folder = (cache_dir() / "models" / embedded_short_name(model_name) if is_embedded(model_name)
              else Path(model_name).expanduser())
    return folder if (folder / "tokenizer_config.json").is_file() else None


def load_local_tokenizer(model_name: str):
    """The tokenizer of ``model_name`` from this machine (no weights, no network), or None (see above)."""
    folder = local_tokenizer_folder(model_name)
    return None if folder is None else _tokenizer_from(str(folder.resolve()))


@functools.lru_cache(maxsize=4)
def _tokenizer_from(folder: str):
    """The folder's tokenizer without torch where it can (``loralab.data.template_tokenizer``), else transformers'."""
    from loralab.data.template_tokenizer import folder_tokenizer

    tokenizer = folder_tokenizer(folder)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
    return tokenizer


def check_run_supervision(cfg, rows: list[dict]) -> SupervisionReport | None:
    """``loralab run``'s check before the kernel: the rows fitted to ``max_seq_length`` as the notebook fits them
    (``overlong_rows``), then :func:`check_supervision` with the model's tokenizer. None when the tokenizer is
    not on this machine (a hub model: the notebook checks with the loaded tokenizer before training)."""
    tokenizer = load_local_tokenizer(cfg.model_name)
    if tokenizer is None:
        return None
    from loralab.data.row_lengths import fit_rows_to_length

    fitted, _ = fit_rows_to_length(rows, tokenizer, cfg.max_seq_length, cfg.overlong_rows)
    return check_supervision(fitted, tokenizer, cfg.max_seq_length)[1]


def preference_answers(rows: list[dict]) -> list[dict]:
    """Each answer of preference rows (chosen and rejected, or KTO's completion) as a chat row with its prompt."""
    keys = ("completion",) if rows and "completion" in rows[0] else ("chosen", "rejected")
    return [{"messages": row["prompt"] + row[key]} for row in rows for key in keys]


def check_preference_supervision(cfg, rows: list[dict], tokenizer=None) -> SupervisionReport | None:
    """Notebook 04: every chosen / rejected (KTO: completion) answer with its prompt, cut at ``max_seq_length`` as
    TRL's DPO collator cuts it (the prompt first, then the answer): SupervisionError when every answer is cut away,
    the template has no end-of-turn token, or no answer keeps it. Nothing is dropped here: TRL drops a pair whose
    prompt alone fills ``max_seq_length``. ``tokenizer``: the loaded one (None: the local one, else None back)."""
    tokenizer = tokenizer if tokenizer is not None else load_local_tokenizer(cfg.model_name)
    if tokenizer is None:
        return None
    report = supervision_report(preference_answers(rows), tokenizer, cfg.max_seq_length, unit="answer")
    problem = refusal(report, tokenizer)
    if problem:
        raise SupervisionError(problem)
    return report
