"""LoRA+ (``loraplus_lr_ratio``): PEFT's optimizer that gives B a larger learning rate than A.

    trainer_class = type("T", (LoraPlusOptimizer, SFTTrainer), {"loraplus_lr_ratio": 16.0})

The mixin replaces the trainer's ``create_optimizer`` with ``peft.optimizers.create_loraplus_optimizer``:
the optimizer the config names (``optim``: adamw_torch, adamw_8bit, ...) with A at ``learning_rate``
and B, together with every other 1-D trainable weight (DoRA's magnitudes), at ``learning_rate x ratio``;
weight decay as ``weight_decay`` says. The schedule (warm-up, decay) scales every group alike, and a
checkpoint's optimizer state loads into the same groups, so resuming works as for plain LoRA.
"""

from __future__ import annotations


class LoraPlusOptimizer:
    """Trainer mixin: with ``loraplus_lr_ratio`` set, the optimizer is PEFT's LoRA+ one."""

    loraplus_lr_ratio: float | None = None

    def create_optimizer(self, model=None):
        if self.loraplus_lr_ratio is None or self.optimizer is not None:
            return super().create_optimizer(model)
        from peft.optimizers import create_loraplus_optimizer

        optimizer_cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
        kwargs = dict(kwargs)
        lr = kwargs.pop("lr", self.args.learning_rate)
        self.optimizer = create_loraplus_optimizer(
            self.model if model is None else model, optimizer_cls, lr=lr, loraplus_lr_ratio=self.loraplus_lr_ratio,
            loraplus_weight_decay=self.args.weight_decay, **kwargs)
        return self.optimizer
