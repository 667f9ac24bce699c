"""LoRA+ (``loraplus_lr_ratio``): PEFT's optimizer that gives B a larger learning rate than A.

    args = SFTConfig(...)
    trainer = SFTTrainer(..., args=args, optimizers=(loraplus_optimizer(model, args, cfg.loraplus_lr_ratio), None))

``peft.optimizers.create_loraplus_optimizer`` with the optimizer ``args.optim`` names (adamw_torch, adamw_8bit,
...): A at ``learning_rate``, B together with every other 1-D trainable weight (DoRA's magnitudes) at
``learning_rate x ratio``; weight decay as ``weight_decay`` says. The Trainer builds its schedule (warm-up,
decay) on it, which scales every group alike, and a checkpoint's optimizer state loads into the same groups, so
resuming works as for plain LoRA. With no ratio it returns None: the Trainer's own optimizer.
"""

from __future__ import annotations


def loraplus_optimizer(model, args, ratio: float | None):
    """PEFT's LoRA+ optimizer for ``model`` under the training arguments ``args``; None without a ratio."""
    if ratio is None:
        return None
    from peft.optimizers import create_loraplus_optimizer
    from transformers import Trainer

    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    kwargs = dict(kwargs)
    lr = kwargs.pop("lr", args.learning_rate)
    return create_loraplus_optimizer(model, optimizer_cls, lr=lr, loraplus_lr_ratio=ratio,
                                     loraplus_weight_decay=args.weight_decay, **kwargs)
