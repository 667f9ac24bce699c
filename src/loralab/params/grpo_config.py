"""Notebook 05's parameters: GRPO with verifiable rewards on a LoRA adapter, validated before any model loads.

    from loralab.params.grpo_config import GrpoConfig
    cfg = params_from_namespace(globals(), _names_before_parameters, schema=GrpoConfig)
    cfg.rewards, cfg.reward_weight_list, cfg.num_generations, cfg.beta, cfg.sft_adapter

A ``GrpoConfig`` is a ``RunConfig`` (model, LoRA, training, checkpoint and held-out knobs of notebook 01,
the same names and checks) with GRPO's knobs added: the rewards (any scorer spec of
``loralab.eval.scorers``, each a TRL reward function with a weight), the generations per prompt,
completion length, sampling temperature and KL strength ``beta``. Held-out prompts are scored before
and after training with the same rewards (``eval_scorers`` is not used: the rewards are the scorers).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from loralab.params.names import is_embedded
from loralab.params.run_config import RunConfig

GRPO_DATASET = "embedded/answer-format"
# The embedded task's rewards: one sentence "The answer is X." (the base meets it sometimes when asked),
# and the right X inside the reply.
EMBEDDED_GRPO_REWARDS = {GRPO_DATASET: ["regex:^The answer is [^.!?]+[.!?]$", "contains"]}


class GrpoConfig(RunConfig):
    """Parameters of one GRPO run (notebook 05). Each field's description is its help line."""

    rewards: list[str] | None = Field(
        None, description="reward functions, each a scorer spec: exact_match, contains, 'regex:<pattern>', "
                          "json_object, final_number, 'python:module:function', ... (None: the embedded task's own)")
    reward_weights: list[float] | None = Field(
        None, description="one weight per reward, summed into the reward GRPO ranks by (None: all 1.0)")
    num_generations: int = Field(4, ge=2, le=256, description="completions sampled per prompt (a group); "
                                 "advantages compare them within the group")
    max_completion_length: int = Field(32, ge=1, description="tokens generated per completion in training")
    temperature: float = Field(1.0, gt=0, le=5, description="sampling temperature of the training completions")
    beta: float = Field(0.0, ge=0, le=10, description="KL penalty to the reference (the starting policy); 0: no "
                        "reference pass, the usual choice with LoRA")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="TRL's GRPO loss normalisation: dapo (TRL's default), grpo, dr_grpo or bnpo")
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group", description="divide advantages by the reward std of the group, the batch, or not at all")
    completions_every: int = Field(5, ge=1, description="write a table of sampled completions with their rewards "
                                   "every N steps (completions.jsonl in the run folder)")
    use_vllm: Literal["auto", "on", "off"] = Field(
        "auto", description="generation engine: auto (vLLM on a CUDA GPU when it is installed, else plain "
                            "generation), on or off")
    sft_adapter: str = Field("", description="start from this SFT adapter (runs/<run>/adapter from notebook 01, "
                             "checked against its base); '': start from the base model")
    dataset_config: str = Field("", description="configuration of a hub dataset, e.g. main for openai/gsm8k ('': "
                                "none)")
    prompt_column: str = Field("", description="column of a hub or .jsonl dataset holding the prompt ('': prompt, "
                               "question or messages)")
    reference_column: str = Field("", description="column holding the reference answer the rewards compare with "
                                  "('': reference, answer or solution)")
    # other defaults than notebook 01
    dataset: str = Field(GRPO_DATASET, description="embedded/answer-format, a .jsonl path or a hub dataset id with "
                         "a prompt column (and a reference answer column for rewards that compare)")
    eval_dataset: str = Field(GRPO_DATASET, description="held-out prompts: embedded/answer-format (its eval split "
                              "shares no question with train), a .jsonl path or a hub dataset id")
    load_in_4bit: bool = Field(False, description="True: QLoRA (NF4 4-bit base); 16-bit is faster on a CPU")
    lora_r: int = Field(8, ge=1, le=1024, description="LoRA rank r (RL needs little capacity: 8 is plenty)")
    lora_alpha: float = Field(16, gt=0, description="LoRA alpha; the update is scaled by alpha/r")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input, in [0, 1)")
    learning_rate: float = Field(2e-4, gt=0, le=1, description="peak learning rate (where to start: "
                                 "docs/choosing.md)")
    max_steps: int = Field(30, ge=1, description="optimizer steps")
    per_device_train_batch_size: int = Field(16, ge=1, description="completions per step per device (a multiple "
                                             "of num_generations: prompts x generations)")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up steps")
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "constant", description="learning-rate schedule after warm-up")
    max_seq_length: int = Field(256, ge=16, description="tokens per prompt + completion")
    eval_examples: int = Field(24, ge=1, description="held-out prompts answered (greedy) and scored before and "
                               "after training")
    max_new_tokens: int = Field(32, ge=1, description="tokens generated per held-out answer")
    packing: Literal["none", "padding_free", "packed"] = Field(
        "none", description="notebook 05 generates its own completions (packing is for notebook 01's SFT)")

    @model_validator(mode="after")
    def _grpo_consistent(self) -> GrpoConfig:
        if self.full_finetuning:
            raise ValueError("notebook 05 trains a LoRA adapter: set full_finetuning: false")
        if self.world_size > 1:
            raise ValueError("notebook 05 trains in one process: write num_processes: 1 and num_nodes: 1")
        if self.packing != "none":
            raise ValueError(f"packing: {self.packing} is for notebook 01 (SFT); GRPO generates its completions: "
                             "write packing: none")
        if self.eval_fraction:
            raise ValueError("notebook 05 holds out prompts with eval_dataset, not eval_fraction: set "
                             "eval_fraction: 0")
        if self.eval_steps or self.early_stopping_patience:
            raise ValueError("notebook 05 scores held-out prompts before and after training (no held-out loss "
                             "during training): set eval_steps: 0 and early_stopping_patience: 0")
        variant = [name for name, on in (("use_rslora", self.use_rslora), ("use_dora", self.use_dora),
                                         ("init_lora_weights", self.init_lora_weights is not True),
                                         ("loraplus_lr_ratio", self.loraplus_lr_ratio is not None)) if on]
        if variant:
            raise ValueError(f"{variant[0]}: notebook 05 trains a plain LoRA adapter; the LoRA variants are "
                             f"notebooks 01 and 04's (docs/lora-variants.md): remove {', '.join(variant)}")
        mapped = [name for name in ("prompt_template", "answer_column", "system_prompt") if getattr(self, name)]
        if mapped:
            raise ValueError(f"{mapped[0]} is notebooks 01 and 04's column map; notebook 05 reads a prompt column "
                             "and a reference column: use prompt_column and reference_column")
        if self.retention_tasks:
            raise ValueError("notebook 05 runs no retention tasks (notebooks 01 and 04 do): write retention_tasks: []")
        if self.rewards is None:
            if self.dataset not in EMBEDDED_GRPO_REWARDS:
                raise ValueError(f"rewards: {self.dataset!r} has no rewards of its own: list them, e.g. rewards: "
                                 "['regex:^The answer is ', contains] or [final_number]")
            self.rewards = list(EMBEDDED_GRPO_REWARDS[self.dataset])
        if not self.rewards:
            raise ValueError("rewards: GRPO needs at least one reward: e.g. rewards: [contains]")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ValueError(f"reward_weights: {len(self.reward_weights)} weights for {len(self.rewards)} rewards: "
                             "give one weight per reward, in the same order, or reward_weights: null")
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be a multiple "
                             f"of num_generations ({self.num_generations}): each prompt's group of completions "
                             f"trains together; e.g. per_device_train_batch_size: {self.num_generations * max(1, batch // self.num_generations)}")
        self.eval_scorers = list(self.rewards)  # held-out prompts are scored with the rewards
        return self

    def _consistent_eval(self) -> None:
        """Notebook 05 scores held-out prompts with its rewards; notebook 01's scorer defaults do not apply."""
        if self.eval_scorers is None:
            self.eval_scorers = []
        if is_embedded(self.eval_dataset) and self.eval_dataset != self.dataset:
            raise ValueError(f"eval_dataset {self.eval_dataset!r} is another embedded set than dataset "
                             f"{self.dataset!r}: hold out the eval split of the same one")

    @property
    def reward_weight_list(self) -> list[float]:
        """One weight per reward (1.0 each when ``reward_weights`` is None)."""
        return list(self.reward_weights) if self.reward_weights is not None else [1.0] * len(self.rewards or [])

    @property
    def prompts_per_step(self) -> int:
        """Distinct prompts in one optimizer step: completions per step / num_generations."""
        return self.per_device_train_batch_size * self.gradient_accumulation_steps // self.num_generations


def validate_grpo_params(params: dict, source: str = "params") -> GrpoConfig:
    """Notebook 05's params as a GrpoConfig, or ParamsError (one sentence per problem)."""
    from loralab.params.schema import validate_against

    return validate_against(GrpoConfig, params, source)
