"""Train one small adapter and save it with its manifest, in one call (notebook 03 trains several).

    from loralab.adapters.train_and_save import train_adapter, caps_rows
    cfg = validate_params({"load_in_4bit": False, "max_steps": 5, "lora_r": 8, ...})
    json_adapter = train_adapter(cfg, load_chat_rows("embedded/json-answers"), out / "json")
    caps_adapter = train_adapter(cfg, caps_rows("train"), out / "caps")       # a second behaviour

Each call loads a fresh base (so adapters never leak into each other), attaches LoRA, trains with
the same ``SFTTrainer`` factory as notebook 01, and writes the standard PEFT folder plus
``loralab_manifest.json``. The second behaviour, ``caps``, answers the embedded questions with the
bare answer in capitals and an exclamation mark (``What is the capital of Peru?`` -> ``LIMA!``),
which is easy to tell apart from the JSON task's ``{"topic": "geography", "answer": "Lima"}``.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

from loralab.data.chat_rows import read_jsonl, to_prompt_completion
from loralab.data.json_answers import data_file
from loralab.params.run_config import RunConfig


@dataclass
class TrainedAdapter:
    """A saved adapter folder and how its short training went."""

    name: str
    path: Path
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def reference_logits_path(adapter_dir: str | Path) -> Path:
    """Where ``train_adapter`` stores the trained model's probe logits for ``adapter_dir``."""
    adapter_dir = Path(adapter_dir)
    return adapter_dir.with_name(f"{adapter_dir.name}.reference_logits.safetensors")


def caps_rows(split: str = "train") -> list[dict]:
    """The embedded questions with the answer in capitals plus '!' (a second, visible behaviour)."""
    rows = []
    for row in read_jsonl(data_file(split)):
        reply = f"{row['answer'].upper()}!"
        rows.append({"messages": [row["messages"][0], {"role": "assistant", "content": reply}],
                     "answer": row["answer"], "topic": row["topic"]})
    return rows


def train_adapter(cfg: RunConfig, rows: list[dict], adapter_dir: str | Path, name: str | None = None,
                  eval_scores: dict | None = None, reference_logits: bool = True) -> TrainedAdapter:
    """Load the base, attach LoRA, train ``cfg.max_steps`` steps on ``rows``, save adapter + manifest.

    With ``reference_logits`` the trained model's logits on the probe prompt are saved next to the
    folder (``<adapter_dir>.reference_logits.safetensors``) so a later reload can be compared.
    """
    from loralab.adapters.manifest import write_manifest
    from loralab.adapters.save import save_adapter, save_reference_logits
    from loralab.data.supervision import check_supervision
    from loralab.model.loading import attach_lora, load_model
    from loralab.train.trainer import build_trainer

    adapter_dir = Path(adapter_dir)
    started = time.perf_counter()
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    messages = [{"messages": row["messages"]} for row in rows]
    messages, _ = check_supervision(messages, tokenizer, cfg.max_seq_length)  # SupervisionError: nothing to learn
    trainer = build_trainer(model, tokenizer, to_prompt_completion(messages), cfg,
                            output_dir=adapter_dir.parent / f".trainer-{adapter_dir.name}")
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    save_adapter(model, tokenizer, adapter_dir)
    if reference_logits:
        save_reference_logits(model, tokenizer, reference_logits_path(adapter_dir))
    write_manifest(adapter_dir, cfg, tokenizer=tokenizer, dataset_rows=messages, eval_scores=eval_scores,
                   extra={"behaviour": name or adapter_dir.name, "train_losses": losses})
    del trainer, model
    gc.collect()
    return TrainedAdapter(name or adapter_dir.name, adapter_dir, losses, time.perf_counter() - started)
