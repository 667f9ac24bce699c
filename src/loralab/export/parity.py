"""Parity of an exported model with the model as trained: greedy answers, top-1 and KL on held-out prompts.

An export (a merged 16-bit folder, later a GGUF file) is only right if it behaves like the model that
was trained: the adapter on its own base (for a QLoRA adapter: on the 4-bit NF4 base). Two steps, so
the two models never need to be in memory together::

    from loralab.export.parity import parity_prompts, record_reference, compare_with_reference
    prompts = parity_prompts(tokenizer, n=8)                   # held-out questions of the embedded task, as ids
    reference = record_reference(trained, tokenizer, prompts, max_new_tokens=24)   # adapter on its own base
    report = compare_with_reference(reference, exported, export_format="merged-16bit")
    report.greedy_agreement, report.top1_agreement, report.mean_kl, report.max_kl, report.passed
    report.check(strict=False)    # ExportDriftWarning past the thresholds (strict=True: ExportParityError)

What is measured, on each prompt (chat template applied, generation prompt added):

* ``greedy_agreement``: share of prompts whose greedy completion of up to ``max_new_tokens`` tokens
  (stopping at the end-of-turn token) is token for token the same in both models;
* ``top1_agreement``: teacher-forced on prompt + the trained model's greedy completion, the share of
  completion positions where both models' most likely next token is the same;
* ``mean_kl`` / ``max_kl``: KL(trained || exported) of the next-token distributions at those positions,
  in nats (softmax of the float32 logits in float64).

``exported`` is anything with ``sequence_logits(ids) -> [len(ids), vocab]`` and
``greedy(ids, max_new_tokens, stop_ids) -> list[int]`` (``TokenModel``); a transformers model (or a PEFT
model) is wrapped in ``TransformersTokenModel`` automatically. A GGUF runtime can implement the same
two methods.

Thresholds per export format are in ``PARITY_THRESHOLDS``, chosen from measurements on the embedded
model (fp32 compute, 8 held-out questions x 24 tokens, ``make run``'s QLoRA adapter): its bf16 merge
into the dequantized NF4 weights measured greedy 8/8 identical, top-1 1.000 over 119 positions, mean KL
1.3e-5 (max 2.0e-4); its bf16 merge into the original 16-bit weights greedy 3/8, top-1 0.924, mean KL
4.9e-2 (max 1.07); a 16-bit adapter's bf16 merge (notebook 03's, 4 x 12) top-1 1.000, mean KL 2.3e-4
(max 2.2e-3). ``merged-16bit`` (top-1 >= 0.98, mean KL <= 1e-2, greedy >= 0.75) sits between: 40-800x
the rounding of a faithful bf16 merge (room for larger models, where bf16 rounding adds up over more
layers), 5x below the drift of a merge into the wrong weights. Greedy agreement is the coarsest (one
near-tie flips a whole answer: 1 of 20 48-token answers of the dequantized merge differs in one digit),
so its bound leaves two of eight prompts. GGUF files (run in llama.cpp itself) have one entry per
format, from the measurements written next to them: F16 and a F16 GGUF LoRA as tight as the 16-bit
merge, Q8_0 a little looser, Q5_K_M and Q4_K_M by their measured drift (their greedy answers differ
on near-ties, so greedy agreement is reported for them, not checked).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from loralab.data.chat_rows import read_jsonl
from loralab.data.json_answers import data_file

DEFAULT_PROMPTS = 8
DEFAULT_NEW_TOKENS = 24


class ExportParityError(ValueError):
    """An export whose outputs drifted past its format's parity thresholds (raised with ``strict=True``)."""


class ExportDriftWarning(UserWarning):
    """An export that differs from the model as trained: past the parity thresholds, or merged into other weights."""


@dataclass(frozen=True)
class ParityThresholds:
    """What an export of one format must reach to count as the model that was trained."""

    min_top1: float  # share of teacher-forced positions with the same top token
    max_mean_kl: float  # mean KL(trained || exported) per position, nats
    min_greedy: float = 0.0  # share of prompts with identical greedy completions (0: reported, not checked)
    why: str = ""  # where the numbers come from

    def failures(self, report: ParityReport) -> list[str]:
        """One phrase per threshold the report misses ([] = within all)."""
        missed = []
        if report.top1_agreement < self.min_top1:
            missed.append(f"top-1 agreement {report.top1_agreement:.3f} < {self.min_top1}")
        if report.mean_kl > self.max_mean_kl:
            missed.append(f"mean KL {report.mean_kl:.2e} > {self.max_mean_kl:.0e}")
        if report.greedy_agreement < self.min_greedy:
            missed.append(f"greedy agreement {report.greedy_agreement:.3f} < {self.min_greedy}")
        return missed


# Measured on SmolLM2-135M-Instruct (fp32 compute, 8 held-out prompts x 24 tokens); see merge.py's docstring.
PARITY_THRESHOLDS: dict[str, ParityThresholds] = {
    "merged-16bit": ParityThresholds(
        min_top1=0.98, max_mean_kl=1e-2, min_greedy=0.75,
        why="measured on the embedded model, 8 x 24: a bf16 merge into the weights the adapter was trained against "
            "top-1 1.000, mean KL 1.3e-5; a QLoRA adapter merged into the original 16-bit weights top-1 0.924, "
            "mean KL 4.9e-2, greedy 3/8"),
    # GGUF files run in llama.cpp (loralab.export.gguf_runtime), `make run`'s adapter merged into the
    # dequantized NF4 weights, 8 x 24 (the embedded model's 576-wide layers take Q5_0/Q8_0 fallbacks in K-quants)
    "gguf-f16": ParityThresholds(
        min_top1=0.98, max_mean_kl=1e-2, min_greedy=0.75,
        why="as merged-16bit; measured F16 in llama.cpp greedy 8/8, top-1 1.000, mean KL 1.5e-5"),
    "gguf-lora-f16": ParityThresholds(
        min_top1=0.98, max_mean_kl=1e-2, min_greedy=0.75,
        why="as merged-16bit; measured F16 base (dequantized NF4) + F16 GGUF LoRA in llama.cpp greedy 8/8, top-1 "
            "1.000, mean KL 2.5e-5; the base alone top-1 0.471, mean KL 2.9"),
    "gguf-q8_0": ParityThresholds(
        min_top1=0.97, max_mean_kl=1e-2, min_greedy=0.5,
        why="measured greedy 8/8, top-1 1.000, mean KL 7.5e-4 (max 8.7e-3): 13x below the bound"),
    "gguf-q5_k_m": ParityThresholds(
        min_top1=0.95, max_mean_kl=3e-2,
        why="measured greedy 6/8, top-1 0.983, mean KL 9.2e-3 (max 8.1e-2); greedy answers are reported, not "
            "checked: a digit flips on near-ties"),
    "gguf-q4_k_m": ParityThresholds(
        min_top1=0.90, max_mean_kl=5e-2,
        why="measured greedy 2/8, top-1 0.950, mean KL 1.2e-2 (max 0.15); JSON shape 19/20 as trained 20/20"),
}


@runtime_checkable
class TokenModel(Protocol):
    """What parity needs from a model: next-token logits for a sequence, and greedy decoding."""

    def sequence_logits(self, token_ids: list[int]) -> Any:
        """float32 tensor [len(token_ids), vocab]: row i is the distribution of the token after position i."""

    def greedy(self, token_ids: list[int], max_new_tokens: int, stop_ids: list[int]) -> list[int]:
        """Greedy continuation (at most ``max_new_tokens``, ending with a stop id if one was produced)."""


class TransformersTokenModel:
    """A transformers / PEFT causal LM as a ``TokenModel`` (one sequence at a time, no padding)."""

    def __init__(self, model) -> None:
        self.model = model

    def sequence_logits(self, token_ids: list[int]) -> Any:
        import torch

        ids = torch.tensor([token_ids], device=self.model.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].float().cpu()
        finally:
            self.model.train(was_training)

    def greedy(self, token_ids: list[int], max_new_tokens: int, stop_ids: list[int]) -> list[int]:
        import torch
        from transformers import GenerationConfig

        ids = torch.tensor([token_ids], device=self.model.device)
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=list(stop_ids),
                                  pad_token_id=stop_ids[0] if stop_ids else None)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
        finally:
            self.model.train(was_training)
        new = out[0, len(token_ids):].tolist()
        for i, token in enumerate(new):  # generate pads after a stop in batches; one row never does, but be exact
            if token in stop_ids:
                return new[: i + 1]
        return new


def as_token_model(model) -> TokenModel:
    """``model`` itself when it is a ``TokenModel``, else a transformers model wrapped as one."""
    if isinstance(model, TokenModel):
        return model
    if hasattr(model, "generate") and callable(model):
        return TransformersTokenModel(model)
    raise TypeError(f"{type(model).__name__} is neither a TokenModel (sequence_logits + greedy) nor a transformers "
                    "model; wrap it in a class with those two methods.")


def heldout_questions(n: int = DEFAULT_PROMPTS) -> list[list[dict]]:
    """``n`` held-out questions of the embedded task (evenly spread over its eval split) as chat prompts."""
    rows = read_jsonl(data_file("eval"))
    if not 1 <= n <= len(rows):
        raise ValueError(f"parity prompts: ask for 1 to {len(rows)} held-out questions, not {n}.")
    step = len(rows) / n
    return [rows[int(i * step)]["messages"][:1] for i in range(n)]


def parity_prompts(tokenizer, n: int = DEFAULT_PROMPTS, messages: list[list[dict]] | None = None) -> list[list[int]]:
    """Token ids of chat prompts (default: ``heldout_questions(n)``), chat template and generation prompt applied."""
    chats = messages if messages is not None else heldout_questions(n)
    out = []
    for chat in chats:
        text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def stop_token_ids(tokenizer) -> list[int]:
    """End-of-turn ids: the tokenizer's eos token (``<|im_end|>`` for ChatML models)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if end_of_turn is not None and end_of_turn not in ids:
        ids.append(end_of_turn)
    return ids


@dataclass
class ParityReference:
    """What the model as trained did on the parity prompts: greedy completions and the logits along them."""

    prompts: list[list[int]]
    completions: list[list[int]]
    logits: list[Any]  # per prompt: float32 [len(completion), vocab] logits at the completion positions
    stop_ids: list[int]
    max_new_tokens: int
    texts: list[str] = field(default_factory=list)  # decoded completions, for reports
    questions: list[str] = field(default_factory=list)  # decoded prompts' user turn, for reports
    seconds: float = 0.0


def _completion_logits(model: TokenModel, prompt: list[int], completion: list[int]) -> Any:
    """Logits at the positions that predict each completion token ([len(completion), vocab])."""
    logits = model.sequence_logits(prompt + completion)
    return logits[len(prompt) - 1: len(prompt) + len(completion) - 1]


def record_reference(trained, tokenizer, prompts: list[list[int]] | None = None,
                     max_new_tokens: int = DEFAULT_NEW_TOKENS, questions: list[str] | None = None) -> ParityReference:
    """Greedy-decode the trained model on ``prompts`` and keep its next-token logits along its completions.

    ``prompts`` defaults to ``parity_prompts(tokenizer)``; ``questions`` (the prompts as text, for reports)
    to the decoded prompts, or the held-out questions when ``prompts`` is the default too.
    """
    started = time.perf_counter()
    model = as_token_model(trained)
    if prompts is None:
        prompts = parity_prompts(tokenizer)
        questions = questions or [chat[-1]["content"] for chat in heldout_questions()]
    stops = stop_token_ids(tokenizer)
    completions, logits = [], []
    for prompt in prompts:
        completion = model.greedy(prompt, max_new_tokens, stops)
        if not completion:
            raise ValueError("the trained model produced no token for a parity prompt; check the model and tokenizer.")
        completions.append(completion)
        logits.append(_completion_logits(model, prompt, completion).float())
    return ParityReference(
        prompts=prompts, completions=completions, logits=logits, stop_ids=stops, max_new_tokens=max_new_tokens,
        texts=[tokenizer.decode(c, skip_special_tokens=True) for c in completions],
        questions=questions or [tokenizer.decode(p, skip_special_tokens=True) for p in prompts],
        seconds=time.perf_counter() - started)


@dataclass
class ParityReport:
    """How an export compares with the model as trained on the parity prompts."""

    export_format: str
    prompts: int
    max_new_tokens: int
    positions: int  # teacher-forced positions compared (sum of the trained completions' lengths)
    greedy_agreement: float
    top1_agreement: float
    mean_kl: float
    max_kl: float
    thresholds: ParityThresholds | None
    failures: list[str] = field(default_factory=list)  # thresholds missed ([] = passed)
    first_difference: dict[str, str] | None = None  # a prompt whose greedy completion differs, both completions
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line with the numbers."""
        return (f"parity ({self.export_format}, {self.prompts} held-out prompts x {self.max_new_tokens} tokens): "
                f"greedy {self.greedy_agreement:.0%} identical, top-1 {self.top1_agreement:.3f} over {self.positions} "
                f"positions, KL(trained||exported) mean {self.mean_kl:.2e} max {self.max_kl:.2e}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the numbers, the thresholds, and whether they passed."""
        out = asdict(self)
        out["passed"] = self.passed
        return out

    def check(self, strict: bool = False, what: str = "the export", advice: str = "") -> None:
        """Warn (``ExportDriftWarning``) when a threshold is missed; ``strict``: raise ``ExportParityError``."""
        if self.passed:
            return
        message = (f"{what} drifted from the model as trained: {'; '.join(self.failures)}. {self.summary()}."
                   + (f" {self.first_difference_text()}" if self.first_difference else "")
                   + (f" {advice}" if advice else ""))
        if strict:
            raise ExportParityError(message)
        warnings.warn(message, ExportDriftWarning, stacklevel=3)
        print(f"WARNING: {message}")

    def first_difference_text(self) -> str:
        diff = self.first_difference or {}
        return (f"E.g. {diff.get('question', '')!r}: trained {diff.get('trained', '')!r}, "
                f"exported {diff.get('exported', '')!r}.")


def compare_with_reference(reference: ParityReference, exported, export_format: str = "merged-16bit",
                           thresholds: ParityThresholds | None = None, tokenizer=None) -> ParityReport:
    """Run ``exported`` on the reference's prompts and compare (see the module docstring for the measures).

    ``thresholds`` defaults to ``PARITY_THRESHOLDS[export_format]`` (None for an unknown format: numbers only).
    ``tokenizer`` decodes the first differing completion for the report.
    """
    import torch

    started = time.perf_counter()
    model = as_token_model(exported)
    thresholds = thresholds if thresholds is not None else PARITY_THRESHOLDS.get(export_format)
    same_greedy, same_top1, positions = 0, 0, 0
    kls: list[torch.Tensor] = []
    first_difference = None
    for i, (prompt, completion, trained_logits) in enumerate(zip(reference.prompts, reference.completions,
                                                                 reference.logits, strict=True)):
        greedy = model.greedy(prompt, reference.max_new_tokens, reference.stop_ids)
        if greedy == completion:
            same_greedy += 1
        elif first_difference is None:
            first_difference = {
                "question": reference.questions[i] if reference.questions else "",
                "trained": reference.texts[i] if reference.texts else str(completion),
                "exported": tokenizer.decode(greedy, skip_special_tokens=True) if tokenizer is not None else str(greedy)}
        exported_lp = _completion_logits(model, prompt, completion).double().log_softmax(-1)
        trained64 = trained_logits.double().log_softmax(-1)
        same_top1 += int((trained64.argmax(-1) == exported_lp.argmax(-1)).sum())
        positions += len(completion)
        kls.append((trained64.exp() * (trained64 - exported_lp)).sum(-1).clamp_min(0.0))
    kl = torch.cat(kls)
    report = ParityReport(
        export_format=export_format, prompts=len(reference.prompts), max_new_tokens=reference.max_new_tokens,
        positions=positions, greedy_agreement=same_greedy / len(reference.prompts), top1_agreement=same_top1 / positions,
        mean_kl=kl.mean().item(), max_kl=kl.max().item(), thresholds=thresholds, first_difference=first_difference)
    report.failures = thresholds.failures(report) if thresholds is not None else []
    report.seconds = time.perf_counter() - started
    return report
