"""Model loading and LoRA attachment through Unsloth's ``FastLanguageModel``.

The same calls run on a CUDA GPU (Unsloth's kernels) and on a CPU (Unsloth's CPU backend)::

    from loralab.model.loading import load_model, attach_lora, lora_layer_table
    model, tokenizer = load_model(cfg)          # 4-bit NF4 base by default
    model = attach_lora(model, cfg)             # r=16, alpha=32, all linear layers
    table = lora_layer_table(model)             # r*(d+k) per adapted layer, to check the count

``unsloth`` is imported here, before transformers / TRL / PEFT, because it patches them.
Weights load from safetensors only (``use_safetensors=True``: a pickle ``.bin`` checkpoint can run
code when unpickled), a model's own Python code runs only with ``trust_remote_code: true`` in the
params, and a hub token comes from the environment or Colab/Kaggle secrets (``loralab.model.hub_token``).

Full fine-tuning on a CPU loads float32 weights. Unsloth's CPU backend otherwise picks bfloat16 on
CPUs that have it, and full fine-tuning then updates bfloat16 weights with no float32 master copy:
an update smaller than bfloat16's resolution (~0.4% of a weight) is lost. Measured on the
decision-flow sweep (docs/sweeps.md, "Findings"): at learning rate 5e-5 the bfloat16 run did not learn the
task in 20 steps (held-out loss 3.32 -> 2.37, format score 0.0), the float32 run did (-> 1.07, 1.0).
LoRA is not affected: its trained weights are float32 next to the frozen base.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from loralab.model.embedded import resolve_model_path
from loralab.model.hub_token import token_kwargs
from loralab.params.run_config import RunConfig, changes_base


def _fast_language_model():
    import unsloth  # noqa: F401  (must precede transformers/trl/peft)
    from unsloth import FastLanguageModel

    return FastLanguageModel


def _dtype(cfg: RunConfig):
    """Unsloth's choice (None), except float32 for full fine-tuning on a CPU (see the module docstring)."""
    import torch

    return torch.float32 if cfg.full_finetuning and not torch.cuda.is_available() else None


def load_model(cfg: RunConfig, *, dtype=None, fast_inference: bool = False):
    """Load the base model and tokenizer as the config asks (embedded names never touch a hub).

    ``dtype`` overrides the compute dtype (``torch.float32`` for a reference run: the 4-bit NF4 weights
    are the same whatever the compute dtype, only the activations' precision changes). ``fast_inference``:
    Unsloth's vLLM engine for generation (notebook 05 on a CUDA GPU with vLLM installed; never on a CPU).
    """
    fast = _fast_language_model()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no per-tensor "Loading weights" bars in notebooks/logs
    model, tokenizer = fast.from_pretrained(
        model_name=resolve_model_path(cfg.model_name),
        max_seq_length=cfg.max_seq_length,
        dtype=dtype if dtype is not None else _dtype(cfg),  # None: bf16 where the CPU/GPU has it, else fp16/fp32
        load_in_4bit=cfg.load_in_4bit and not cfg.full_finetuning,
        full_finetuning=cfg.full_finetuning,
        use_gradient_checkpointing="unsloth" if cfg.use_gradient_checkpointing else False,
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=True,  # never unpickle a .bin checkpoint
        **({"fast_inference": True, "max_lora_rank": cfg.lora_r} if fast_inference else {}),
        **token_kwargs(),  # only when HF_TOKEN (or a Colab/Kaggle secret) is set
    )
    return model, tokenizer


def attach_lora(model, cfg: RunConfig):
    """Wrap the model with LoRA adapters on ``cfg.target_module_list`` (a PEFT model comes back).

    With ``full_finetuning`` the model is returned unchanged: every weight trains. The variant knobs
    (``use_rslora``, ``use_dora``, ``init_lora_weights``) go to PEFT's ``LoraConfig`` through Unsloth;
    PiSSA and OLoRA rewrite the base weights here (``loralab.adapters.save.save_adapter`` saves the adapter
    converted back to the original base).
    """
    if cfg.full_finetuning:
        return model
    fast = _fast_language_model()
    model = fast.get_peft_model(
        model,
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_module_list,
        bias="none",
        use_gradient_checkpointing="unsloth" if cfg.use_gradient_checkpointing else False,
        random_state=cfg.seed,
        use_rslora=cfg.use_rslora,
        init_lora_weights=cfg.init_lora_weights,
        **({"use_dora": True} if cfg.use_dora else {}),  # Unsloth passes it on to PEFT's LoraConfig
    )
    keep_initial_adapter(model)
    return model


INITIAL_ADAPTER_ATTR = "_loralab_initial_adapter"


def keep_initial_adapter(model) -> None:
    """Keep a copy of a PiSSA/OLoRA adapter as initialised (A0, B0), before any training step; nothing for others.

    Those inits move the adapter's start out of the base (W = W_res + B0 @ A0). The copy goes to PEFT's
    ``save_pretrained(path_initial_model_for_weight_conversion=...)`` (``loralab.adapters.save.as_plain_lora``),
    which saves [A | A0], [B | -B0] (rank 2r, alpha doubled; x sqrt(2) with rsLoRA): a plain LoRA adapter for the
    ORIGINAL base.
    """
    from peft import get_peft_model_state_dict

    config = (getattr(model, "peft_config", None) or {}).get("default")
    if config is None or not changes_base(config.init_lora_weights):
        return
    state = get_peft_model_state_dict(model)
    setattr(model, INITIAL_ADAPTER_ATTR, {name: tensor.detach().clone().cpu() for name, tensor in state.items()})


def for_inference(model) -> None:
    """Switch to generation mode (KV cache on, left padding)."""
    _fast_language_model().for_inference(model)


def for_training(model) -> None:
    """Switch back to training mode."""
    _fast_language_model().for_training(model)


@dataclass(frozen=True)
class LoraLayer:
    """One adapted linear layer: W is d x k (out x in); LoRA adds B (d x r) @ A (r x k).

    DoRA adds one magnitude per output row: ``magnitude`` is d then (0 for the other variants).
    """

    name: str
    d: int
    k: int
    r: int
    magnitude: int = 0

    @property
    def params(self) -> int:
        return self.r * (self.d + self.k) + self.magnitude


def lora_layer_table(model) -> list[LoraLayer]:
    """Every LoRA-adapted layer with its shape, read from the A and B matrices PEFT created."""
    rows = []
    for name, module in model.named_modules():
        lora_a = getattr(module, "lora_A", None)
        if not lora_a or "default" not in lora_a:
            continue
        a = lora_a["default"].weight  # r x k
        b = module.lora_B["default"].weight  # d x r
        magnitudes = getattr(module, "lora_magnitude_vector", None) or {}
        magnitude = magnitudes["default"].weight.numel() if "default" in magnitudes else 0  # DoRA: d
        rows.append(LoraLayer(name=name, d=b.shape[0], k=a.shape[1], r=a.shape[0], magnitude=magnitude))
    return rows


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts; a 4-bit weight counts as the elements it stores for.

    bitsandbytes packs two 4-bit values per byte, so ``numel`` of a Params4bit is half the matrix;
    ``quant_state.shape`` gives the real shape.
    """
    trainable = total = 0
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        n = int(state.shape.numel()) if state is not None else param.numel()
        total += n
        if param.requires_grad:
            trainable += n
    return trainable, total


def weights_fingerprint(model, trainable: bool) -> str:
    """SHA-256 over the raw bytes of the trainable (or the frozen) parameters, in name order.

    Taken before and after training it shows which weights moved: the frozen base must not.
    """
    import torch

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if param.requires_grad != trainable:
            continue
        digest.update(name.encode())
        data = param.detach().contiguous().cpu()
        digest.update(data.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def weights_fingerprints(model) -> dict[str, str]:
    """``{"base": ..., "lora": ...}``: the fingerprints of the frozen and of the trainable weights."""
    return {"base": weights_fingerprint(model, trainable=False), "lora": weights_fingerprint(model, trainable=True)}


def base_weights_fingerprint(model) -> str:
    """SHA-256 over every parameter that is not a LoRA matrix, whatever its ``requires_grad`` flag.

    Preference trainers switch ``requires_grad`` on some frozen tensors (TRL prepares the model for
    its reference passes), so the flag cannot say which weights are the base; the names can.
    """
    import torch

    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        if "lora_" in name:
            continue
        digest.update(name.encode())
        digest.update(param.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
