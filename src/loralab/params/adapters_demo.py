"""Parameters of notebook 03 (adapters: manifests, verified loading, hot-swap serving, merge).

    demo = notebook_params(globals(), _names_before_parameters, schema=AdaptersDemoConfig)   # loralab.runs
    demo.train_config()                                                      # a RunConfig for one small adapter
    merge_adapter(adapter, out / "merged", **demo.merge_options())           # merge_into and parity settings

Unknown names are refused with the nearest valid one, like notebook 01's parameters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from loralab.params.run_config import RunConfig, validate_params
from loralab.params.schema import validate_against


class AdaptersDemoConfig(BaseModel):
    """Notebook 03's parameters; each description is the help line."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())  # `model_name` is a field (pydantic < 2.10)

    model_name: str = Field("embedded/smollm2-135m-instruct", description="the base every adapter is served on")
    adapter_dirs: dict[str, str] = Field(
        default_factory=dict, description="name -> adapter folder from earlier runs; {}: train json and caps here")
    max_steps: int = Field(6, ge=1, le=500, description="optimizer steps per adapter trained here")
    per_device_train_batch_size: int = Field(4, ge=1, description="examples per training step")
    learning_rate: float = Field(3e-3, gt=0, le=1, description="learning rate of the short training runs")
    lora_r: int = Field(8, ge=1, le=256, description="LoRA rank of the adapters trained here")
    lora_alpha: float = Field(16, gt=0, description="LoRA alpha (scale alpha/r)")
    max_seq_length: int = Field(128, ge=16, description="tokens per training example")
    load_in_4bit: bool = Field(False, description="train and serve on a 4-bit base (slower on CPU)")
    questions: int = Field(4, ge=1, le=30, description="held-out questions answered side by side")
    max_new_tokens: int = Field(24, ge=1, description="tokens generated per answer")
    merge_adapter_name: str = Field("json", description="adapter merged into a 16-bit model folder ('': skip the merge)")
    merge_into: Literal["", "dequantized", "original"] = Field(
        "", description="weights merged into; '': dequantized NF4 for a 4-bit-trained adapter, original for a 16-bit one")
    merge_parity_prompts: int = Field(
        8, ge=0, le=69, description="held-out prompts the merged model is compared on with the trained one (0: skip)")
    merge_parity_tokens: int = Field(24, ge=1, le=256, description="new tokens per parity prompt")
    gguf_type: Literal["", "f16", "q8_0", "q5_k_m", "q4_k_m", "q6_k", "q4_0"] = Field(
        "q4_k_m", description="GGUF written from the merged folder by llama.cpp (next to its F16 file and an Ollama "
                              "Modelfile): f16, q8_0, q5_k_m, q4_k_m, q6_k, q4_0, or '' to skip")
    gguf_lora: bool = Field(False, description="also write the adapter as a GGUF LoRA with its base (llama.cpp --lora)")
    gguf_score_questions: int = Field(
        20, ge=0, le=69, description="held-out questions each GGUF answers in llama.cpp for its task score (0: skip)")
    seed: int = Field(3407, ge=0, le=2**32 - 1, description="seed for LoRA init and data order (0 to 4294967295)")
    run_dir: str = Field("", description="folder for metrics.json, adapters and the merged model ('': runs/<time>-03)")

    @field_validator("adapter_dirs")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"adapter name {name!r} must be a simple name such as 'json' or 'support_bot'")
        return value

    def resolve_run_dir(self, runs_root: str = "runs") -> Path:
        """``run_dir``, or a new ``runs_root/<time>-03_adapters`` folder; created either way."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(self.run_dir) if self.run_dir else Path(runs_root) / f"{stamp}-03_adapters"
        path.mkdir(parents=True, exist_ok=True)
        return path.resolve()

    def merge_options(self) -> dict[str, Any]:
        """Keyword arguments of ``merge_adapter`` these parameters ask for."""
        return {"merge_into": self.merge_into or None, "parity": self.merge_parity_prompts > 0,
                "parity_prompts_n": max(1, self.merge_parity_prompts), "parity_new_tokens": self.merge_parity_tokens}

    def train_config(self) -> RunConfig:
        """The RunConfig each adapter trained in the notebook uses."""
        return validate_params({
            "model_name": self.model_name, "load_in_4bit": self.load_in_4bit, "max_seq_length": self.max_seq_length,
            "lora_r": self.lora_r, "lora_alpha": self.lora_alpha, "max_steps": self.max_steps,
            "per_device_train_batch_size": self.per_device_train_batch_size, "learning_rate": self.learning_rate,
            "warmup_steps": 0, "use_gradient_checkpointing": False, "seed": self.seed, "eval_dataset": "", "eval_scorers": [],
        }, source="notebook 03 parameters")




def validate_demo_params(params: dict[str, Any], source: str = "notebook 03 parameters") -> AdaptersDemoConfig:
    """Validate notebook 03's parameters, or raise ParamsError with a sentence per problem."""
    return validate_against(AdaptersDemoConfig, params, source)
