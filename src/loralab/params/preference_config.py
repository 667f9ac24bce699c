"""Notebook 04's parameters: preference tuning (DPO, ORPO, KTO) of a LoRA adapter, validated before any model loads.

    from loralab.params.preference_config import PreferenceConfig
    cfg = params_from_namespace(globals(), _names_before_parameters, schema=PreferenceConfig)
    cfg.method, cfg.beta, cfg.loss_type, cfg.sft_adapter

A ``PreferenceConfig`` is a ``RunConfig`` (the model, LoRA, training, checkpoint and held-out knobs of
notebook 01, the same names and checks) with the preference knobs added and other defaults: the
embedded preference set ``embedded/concise-answers`` and a smaller learning rate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from loralab.params.run_config import RunConfig

PREFERENCE_DATASET = "embedded/concise-answers"
# TRL 1.15 DPOConfig.loss_type (its help text lists them); "sigmoid" is the DPO paper's loss.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


class PreferenceConfig(RunConfig):
    """Parameters of one preference-tuning run (notebook 04). Each field's description is its help line."""

    method: Literal["dpo", "orpo", "kto"] = Field(
        "dpo", description="dpo (pairs, a reference model), orpo (pairs, no reference, SFT built in) or kto "
                           "(single answers marked good or bad, a reference model)")
    beta: float = Field(0.1, gt=0, le=100, description="strength of the preference term: how far the policy may "
                        "move from the reference (DPO/KTO) or the weight of the odds-ratio term (ORPO)")
    loss_type: str = Field("sigmoid", description="DPO's loss: sigmoid (the DPO paper), ipo, hinge, robust, "
                           "... (TRL's list); only for method dpo")
    sft_adapter: str = Field("", description="start from this SFT adapter (runs/<run>/adapter from notebook 01, "
                             "checked against its base); '': start from the base model")
    dataset: str = Field(PREFERENCE_DATASET, description="embedded/concise-answers, a local file (.jsonl, .csv, "
                         ".tsv, .parquet, .json, .arrow) or a hub dataset id with prompt/chosen/rejected (or KTO "
                         "prompt/completion/label) rows, or other columns mapped by prompt_template")
    eval_dataset: str = Field(PREFERENCE_DATASET, description="held-out pairs: embedded/concise-answers (its eval "
                              "split shares no prompt with train), a local file or a hub dataset id (mapped as "
                              "dataset is)")
    prompt_template: str = Field("", description="map your columns: the prompt built from a row's columns, e.g. "
                                 "'Answer in one sentence: {question}' ('': the rows hold prompt/chosen/rejected or "
                                 "prompt/completion/label)")
    chosen_column: str = Field("", description="with prompt_template: the column holding the preferred reply")
    rejected_column: str = Field("", description="with prompt_template: the column holding the worse reply")
    eval_scorers: list[str] | None = Field(
        None, description="scorers of generated held-out replies against the chosen answer, as in notebook 01 "
                          "(None: the embedded task's own: one sentence 'The answer is X.' with the right X)")
    lora_r: int = Field(16, ge=1, le=1024, description="LoRA rank r of the adapter trained here (ignored with "
                        "sft_adapter: its own r is used)")
    load_in_4bit: bool = Field(False, description="True: QLoRA (NF4 4-bit base); 16-bit is faster on a CPU")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input, in [0, 1)")
    warmup_steps: int = Field(2, ge=0, description="linear warm-up steps")
    max_new_tokens: int = Field(32, ge=1, description="tokens generated per held-out answer")
    learning_rate: float = Field(5e-4, gt=0, le=1, description="peak learning rate")
    max_steps: int = Field(20, ge=1, description="optimizer steps")
    per_device_train_batch_size: int = Field(4, ge=1, description="pairs (KTO: rows) per step per device")
    max_seq_length: int = Field(160, ge=16, description="tokens per prompt + answer")
    packing: Literal["none", "padding_free", "packed"] = Field(
        "none", description="notebook 04 batches pairs padded (packing is for notebook 01's SFT)")

    def answer_columns(self) -> dict[str, str]:
        """Notebook 04 maps two answer columns: the chosen reply and the rejected one (KTO: good and bad)."""
        return {"chosen_column": self.chosen_column, "rejected_column": self.rejected_column}

    @model_validator(mode="after")
    def _preference_consistent(self) -> PreferenceConfig:
        if self.answer_column:
            raise ValueError(f"answer_column ({self.answer_column!r}) is notebook 01's; notebook 04 maps a pair's "
                             "replies with chosen_column and rejected_column")
        if self.full_finetuning:
            raise ValueError("notebook 04 trains a LoRA adapter: set full_finetuning: false")
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r} is not one of TRL's DPO losses: "
                             f"{', '.join(DPO_LOSS_TYPES)}")
        if self.method != "dpo" and self.loss_type != "sigmoid":
            raise ValueError(f"loss_type is DPO's; method {self.method} has its own loss: remove loss_type or "
                             "write method: dpo")
        if self.world_size > 1:
            raise ValueError("notebook 04 trains in one process: write num_processes: 1 and num_nodes: 1 (several "
                             "devices are for notebook 01)")
        if self.packing != "none":
            raise ValueError(f"packing: {self.packing} is for notebook 01 (SFT); notebook 04's preference trainers "
                             "take padded pairs: write packing: none")
        if self.eval_fraction:
            raise ValueError("notebook 04 holds out pairs with eval_dataset (a file or split that shares no prompt "
                             "with the training pairs), not eval_fraction: set eval_fraction: 0")
        return self

    @property
    def uses_reference(self) -> bool:
        """DPO and KTO compare against a reference model; ORPO does not."""
        return self.method in ("dpo", "kto")


def validate_preference_params(params: dict, source: str = "params") -> PreferenceConfig:
    """Notebook 04's params as a PreferenceConfig, or ParamsError (one sentence per problem)."""
    from loralab.params.schema import validate_against

    return validate_against(PreferenceConfig, params, source)

