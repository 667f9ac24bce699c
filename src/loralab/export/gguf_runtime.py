"""Run a GGUF file in llama.cpp itself (llama-cpp-python), as a parity ``TokenModel``.

    from loralab.export.gguf_runtime import LlamaCppTokenModel
    gguf_model = LlamaCppTokenModel("runs/a/merged.Q4_K_M.gguf")               # or lora_path="adapter.gguf"
    report = compare_with_reference(reference, gguf_model, "gguf-q4_k_m")      # loralab.export.parity
    embedded_task_scores(gguf_model, tokenizer, n=20)   # loralab.eval.token_model_scores: {"json_shape": 1.0, ...}

``LlamaCppTokenModel`` is a ``TokenModel`` (``loralab.export.parity``): the prompt ids are the Hugging
Face tokenizer's (chat template applied), fed to llama.cpp as tokens, so parity measures the weights
and llama.cpp's kernels, not two tokenizers; greedy decoding is the argmax of llama.cpp's logits, one
token at a time. A base GGUF with a GGUF LoRA (``lora_path``) runs the adapter unmerged, as llama.cpp's
server does with ``--lora``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loralab.params.runtime_check import thread_budget


class LlamaCppTokenModel:
    """A GGUF file (optionally with a GGUF LoRA) in llama.cpp, as a parity ``TokenModel``."""

    def __init__(self, gguf_path: str | Path, lora_path: str | Path | None = None, n_ctx: int = 1024,
                 threads: int | None = None) -> None:
        from llama_cpp import Llama

        self.path = Path(gguf_path)
        threads = threads or thread_budget()
        self.llm = Llama(model_path=str(gguf_path), lora_path=str(lora_path) if lora_path else None, n_ctx=n_ctx,
                         logits_all=True, n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, seed=0,
                         verbose=False)

    def _evaluate(self, token_ids: list[int]) -> None:
        if len(token_ids) >= self.llm.n_ctx():
            raise ValueError(f"{len(token_ids)} tokens do not fit llama.cpp's context of {self.llm.n_ctx()}.")
        self.llm.reset()
        self.llm.eval(token_ids)

    def sequence_logits(self, token_ids: list[int]) -> Any:
        import numpy as np
        import torch

        self._evaluate(token_ids)
        return torch.from_numpy(np.array(self.llm.scores[: len(token_ids)], dtype=np.float32))

    def greedy(self, token_ids: list[int], max_new_tokens: int, stop_ids: list[int]) -> list[int]:
        import numpy as np

        self._evaluate(token_ids)
        new: list[int] = []
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            new.append(token)
            if token in stop_ids or self.llm.n_tokens + 1 >= self.llm.n_ctx():
                break
            self.llm.eval([token])
        return new

    def close(self) -> None:
        self.llm.close()
