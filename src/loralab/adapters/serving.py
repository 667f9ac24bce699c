"""Hot-swap serving: one base model in memory, many LoRA adapters loaded by name.

    from loralab.adapters.serving import AdapterServer
    server = AdapterServer("embedded/smollm2-135m-instruct", load_in_4bit=False)
    server.add_adapter("json", "runs/a/adapter")          # checked against the base's fingerprint first
    server.add_adapter("caps", "runs/b/adapter")
    server.generate(prompts, adapter="json")              # every row with one adapter
    server.generate(prompts, adapter=None)                # the bare base (PEFT's disable_adapter)
    server.generate_mixed(prompts, ["json", "caps", None])  # one batch, a different adapter per row
    server.memory_table()                                 # bytes each adapter adds vs the base
    server.switch_seconds("caps")                         # time to make another adapter the active one

Adapters are only added after ``check_adapter_base`` agreed that they were trained on this base
(same weights, tokenizer and chat template), the base being fingerprinted once. Mixed batches use
PEFT's ``adapter_names`` argument (``"__base__"`` = no adapter for that row); they need unmerged
adapters, which is how the server keeps them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in adapter_names


def _rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss
    except ImportError:  # Linux fallback
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class AdapterStats:
    """One adapter in the server: its tensors' size next to the base, and what loading it took."""

    name: str
    path: str
    tensor_bytes: int  # LoRA A and B matrices of this adapter, as held in memory
    rss_delta_bytes: int  # process RSS before/after loading (noisy: allocator, caches)
    load_seconds: float
    verified: bool  # False: no manifest, or loaded with allow_base_mismatch


class AdapterServer:
    """A base model plus named adapters; generate with any one of them, none, or a mix per row."""

    def __init__(self, base_model: str, load_in_4bit: bool = False, max_seq_length: int = 512):
        from loralab.model.fingerprints import base_fingerprint
        from loralab.model.loading import load_model
        from loralab.params.run_config import validate_params

        self.base_model = base_model
        self.load_in_4bit = load_in_4bit
        self.fingerprint = base_fingerprint(base_model)
        rss_before = _rss_bytes()
        cfg = validate_params({"model_name": base_model, "load_in_4bit": load_in_4bit,
                               "max_seq_length": max_seq_length, "use_gradient_checkpointing": False},
                              source="AdapterServer")
        self.model, self.tokenizer = load_model(cfg)
        self.model.eval()
        self.base_rss_delta_bytes = _rss_bytes() - rss_before
        self.base_tensor_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        self.adapters: dict[str, AdapterStats] = {}

    # -- adapters ---------------------------------------------------------------------------------
    def add_adapter(self, name: str, adapter_dir: str | Path, allow_base_mismatch: bool = False) -> AdapterStats:
        """Check ``adapter_dir`` against this base, then load it under ``name`` (PEFT ``load_adapter``)."""
        import unsloth  # noqa: F401
        from peft import PeftModel

        from loralab.adapters.verified_loading import check_adapter_base

        if not name or name == BASE_ROW or name in self.adapters:
            raise ValueError(f"adapter name {name!r} is empty, reserved or taken; loaded: {sorted(self.adapters)}.")
        check = check_adapter_base(adapter_dir, self.base_model, self.load_in_4bit, allow_base_mismatch,
                                   base=self.fingerprint)
        rss_before = _rss_bytes()
        started = time.perf_counter()
        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(adapter_dir), adapter_name=name, is_trainable=False)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(adapter_dir), adapter_name=name,
                                                   is_trainable=False)
        self.model.eval()
        seconds = time.perf_counter() - started
        stats = AdapterStats(name, str(adapter_dir), self._adapter_bytes(name), _rss_bytes() - rss_before, seconds,
                             check.verified)
        self.adapters[name] = stats
        return stats

    def _adapter_bytes(self, name: str) -> int:
        marker = f".{name}."
        return sum(p.numel() * p.element_size() for n, p in self.model.named_parameters()
                   if ("lora_A" in n or "lora_B" in n) and marker in n)

    def _require(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.adapters:
            raise ValueError(f"no adapter named {adapter!r}; loaded: {sorted(self.adapters)} (or None for the base).")

    def switch_seconds(self, adapter: str, repeats: int = 20) -> float:
        """Mean seconds of ``set_adapter`` (making an already loaded adapter the active one)."""
        self._require(adapter)
        others = [n for n in self.adapters if n != adapter] or [adapter]
        started = time.perf_counter()
        for i in range(repeats):
            self.model.set_adapter(adapter if i % 2 == 0 else others[0])
        seconds = (time.perf_counter() - started) / repeats
        self.model.set_adapter(adapter)
        return seconds

    def memory_table(self) -> list[dict]:
        """One row per adapter: its bytes, as a share of the base's bytes, and the RSS change on loading."""
        rows = [{"name": "base", "tensor_MB": self.base_tensor_bytes / 1e6, "share_of_base_%": 100.0,
                 "rss_delta_MB": self.base_rss_delta_bytes / 1e6, "load_s": None}]
        for stats in self.adapters.values():
            rows.append({"name": stats.name, "tensor_MB": stats.tensor_bytes / 1e6,
                         "share_of_base_%": 100 * stats.tensor_bytes / self.base_tensor_bytes,
                         "rss_delta_MB": stats.rss_delta_bytes / 1e6, "load_s": stats.load_seconds})
        return rows

    # -- inference --------------------------------------------------------------------------------
    def _batch(self, prompts: list[list[dict]]):
        texts = [self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        old_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            return self.tokenizer(texts, return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(self.model.device)
        finally:
            self.tokenizer.padding_side = old_side

    def _run(self, fn, adapter: str | None):
        self._require(adapter)
        from peft import PeftModel

        if not isinstance(self.model, PeftModel):
            return fn({})
        if adapter is None:
            with self.model.disable_adapter():
                return fn({})
        self.model.set_adapter(adapter)
        return fn({})

    def _generate(self, batch, max_new_tokens: int, extra: dict) -> list[str]:
        import torch

        with torch.no_grad():
            out = self.model.generate(**batch, **extra, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def generate(self, prompts: list[list[dict]], adapter: str | None, max_new_tokens: int = 32) -> list[str]:
        """Greedy replies to chat prompts with one adapter (None: the base alone)."""
        batch = self._batch(prompts)
        return self._run(lambda extra: self._generate(batch, max_new_tokens, extra), adapter)

    def generate_mixed(self, prompts: list[list[dict]], adapters: list[str | None],
                       max_new_tokens: int = 32) -> list[str]:
        """Greedy replies where row i uses ``adapters[i]`` (None: the base), all in one batch."""
        names = self._row_names(prompts, adapters)
        batch = self._batch(prompts)
        return self._generate(batch, max_new_tokens, {"adapter_names": names})

    def _row_names(self, prompts: list, adapters: list[str | None]) -> list[str]:
        if len(adapters) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(adapters)} adapter names; give one per row.")
        for adapter in adapters:
            self._require(adapter)
        return [BASE_ROW if a is None else a for a in adapters]

    def logits(self, prompts: list[list[dict]], adapter: str | None):
        """Last-position-aligned logits (float32) for a padded batch of prompts with one adapter."""
        batch = self._batch(prompts)
        return self._run(lambda extra: self._forward(batch, extra), adapter)

    def logits_mixed(self, prompts: list[list[dict]], adapters: list[str | None]):
        """Logits of one batch where row i uses ``adapters[i]``."""
        names = self._row_names(prompts, adapters)
        return self._forward(self._batch(prompts), {"adapter_names": names})

    def _forward(self, batch, extra: dict):
        import torch

        with torch.no_grad():
            return self.model(**batch, **extra).logits.float().cpu()
