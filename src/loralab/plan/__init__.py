"""Plan (torch-free): architectures, the LoRA parameter arithmetic, the memory estimate, the planner."""

from loralab.plan.architectures import get_architecture
from loralab.plan.lora_math import alpha_scale, full_params, lora_params, trainable_params
from loralab.plan.memory import GIB, estimate_memory, tutorial_rule_gb
from loralab.plan.planner import GPUS, plan

__all__ = ["GIB", "GPUS", "alpha_scale", "estimate_memory", "full_params", "get_architecture", "lora_params",
           "plan", "trainable_params", "tutorial_rule_gb"]
