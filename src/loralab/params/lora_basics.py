"""Notebook 00's parameters: one real layer adapted by hand, and the memory tables.

    from loralab.params.notebook import params_from_namespace
    from loralab.params.lora_basics import LoraBasicsConfig
    cfg = params_from_namespace(globals(), _names_before_parameters, LoraBasicsConfig)  # unknown names refused
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoraBasicsConfig(BaseModel):
    """Notebook 00's parameters; each description is the help line."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())  # `model_name` is a field (pydantic < 2.10)

    model_name: str = Field("embedded/smollm2-135m-instruct", description="the real model whose layer we adapt")
    layer_index: int = Field(0, ge=0, description="which decoder block's q_proj gets the adapter")
    lora_r: int = Field(4, ge=1, description="LoRA r for the hands-on layer")
    lora_alpha: float = Field(8, gt=0, description="LoRA alpha for the hands-on layer (the convention is 2 * lora_r)")
    max_steps: int = Field(150, ge=1, description="Adam steps on the toy target")
    learning_rate: float = Field(0.01, gt=0, description="learning rate for A and B")
    max_seq_length: int = Field(2048, ge=1, description="tokens per sequence in the memory tables")
    per_device_train_batch_size: int = Field(1, ge=1, description="sequences per step on each GPU in the memory "
                                             "tables")
    reader_answer: int = Field(0, ge=0, description="your loraParams answer for d, k, r of 4096, 4096, 16 (0 means "
                               "not answered yet)")
    run_dir: str = Field("runs/00_lora_basics", description="plots and checks.json go here (never into notebooks/)")
