"""The GRPO trainer factory: TRL's GRPOTrainer from a GrpoConfig, with the reward log written into the run folder.

    from loralab.train.grpo_trainer import build_grpo_trainer, uses_vllm
    model, tokenizer = load_model(cfg, fast_inference=uses_vllm(cfg))   # vLLM only on a CUDA GPU that has it
    trainer = build_grpo_trainer(model, tokenizer, rows, rewards, cfg, output_dir=run_dir / "checkpoints",
                                 run_dir=run_dir)
    trainer.train(resume_from_checkpoint=resume_checkpoint(run_dir / "checkpoints", cfg))
    reward_log(trainer.state.log_history)      # one entry per step: each reward's mean/std, length, KL, ...

Each step samples ``num_generations`` completions for each of ``cfg.prompts_per_step`` prompts, scores
them with every reward function (weighted sum), and pushes the policy towards the completions that beat
their group's mean. On a CPU (and a GPU without vLLM) completions come from the model's own
``generate``; on a CUDA GPU with vLLM installed Unsloth's fast generation path is used (the model is
loaded with ``fast_inference=True`` and TRL's ``use_vllm``). With ``beta`` 0 no reference pass runs.

The trainer logs, per step, ``rewards/<name>/mean`` and ``/std`` for each reward, ``reward`` and
``reward_std`` (the weighted sum), ``frac_reward_zero_std`` (the share of groups whose completions all
got the same reward: they teach nothing), completion lengths, and ``kl`` when ``beta`` > 0. Every
``cfg.completions_every`` steps the completions sampled at that step, with each reward and their
advantage, are appended to ``completions.jsonl`` in the run folder (on a resume, what the interrupted run wrote
after its last checkpoint is dropped first: ``record_completions``). Checkpoints are whole or absent as in notebook
01 (``loralab.train.checkpoints``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from loralab.params.errors import ParamsError
from loralab.params.grpo_config import GrpoConfig
from loralab.train.trainer import common_args, run_callbacks

COMPLETIONS_FILE = "completions.jsonl"
# What reward_log keeps of each logged step (TRL 1.15's names), besides every rewards/<name>/mean|std.
STEP_KEYS = ("step", "reward", "reward_std", "frac_reward_zero_std", "completions/mean_length",
             "completions/clipped_ratio", "kl", "loss", "learning_rate")


def uses_vllm(cfg: GrpoConfig) -> bool:
    """True when completions come from vLLM: ``use_vllm`` on, or auto with a CUDA GPU and vLLM installed."""
    import torch

    available = torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None
    if cfg.use_vllm == "on" and not available:
        raise ParamsError("use_vllm: on needs a CUDA GPU with vLLM installed (pip install vllm); write use_vllm: "
                          "auto to generate with the model itself where vLLM is missing")
    return cfg.use_vllm == "on" or (cfg.use_vllm == "auto" and available)


def grpo_args(cfg: GrpoConfig, output_dir: str | Path, vllm: bool) -> dict:
    """GRPOConfig's keyword arguments: the trainers' common ones (less SFT's) and GRPO's own."""
    args = common_args(cfg, output_dir, has_eval=False)
    for name in ("max_length", "dataset_num_proc"):  # SFT's; GRPOConfig has max_completion_length instead
        args.pop(name, None)
    return args | {
        "num_generations": cfg.num_generations,
        "max_completion_length": cfg.max_completion_length,
        "temperature": cfg.temperature,
        "beta": cfg.beta,
        "loss_type": cfg.loss_type,
        "scale_rewards": cfg.scale_rewards,
        "reward_weights": cfg.reward_weight_list,
        "use_vllm": vllm,
        **({"vllm_mode": "colocate"} if vllm else {}),
        "log_completions": False,  # the table goes to completions.jsonl (record_completions), not to rich/wandb
        "shuffle_dataset": True,
    }


def record_completions(trainer, run_dir: str | Path, every: int):
    """Every ``every`` steps (and at the last), the completions the GRPO trainer just sampled, with each reward and
    their advantage, appended to ``run_dir/completions.jsonl``; a trainer callback, added to ``trainer``.

    It reads the table TRL's ``GRPOTrainer`` keeps for its own ``log_completions`` (``trainer._logs``: prompts,
    completions, rewards, advantages; ``tests/test_grpo.py`` fails if that changes). On a resume, what an
    interrupted run wrote after its last checkpoint is dropped first.
    """
    from transformers import TrainerCallback

    path = Path(run_dir) / COMPLETIONS_FILE

    class CompletionsTable(TrainerCallback):
        trimmed = False

        def on_log(self, args, state, control, logs=None, **kwargs):
            step = state.global_step
            if not state.is_world_process_zero or not logs or "loss" not in logs or not step:
                return
            if step % every and step != state.max_steps:
                return
            if not self.trimmed:  # first write of this process: after a resume, drop what a killed run wrote
                self.trimmed = True
                _drop_completions_from(path, step)
            _append_completions(path, step, trainer._logs)

    trainer.add_callback(CompletionsTable())
    return trainer


def _append_completions(path: Path, step: int, logged) -> None:
    """One JSON line per completion of ``logged`` (TRL's table of the last step)."""
    rewards = {name: list(values) for name, values in logged["rewards"].items()}
    advantages = list(logged["advantages"])
    lines = []
    for i, (prompt, completion) in enumerate(zip(logged["prompt"], logged["completion"])):
        prompt_text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
        text = "".join(m.get("content", "") for m in completion) if isinstance(completion, list) else completion
        lines.append({"step": step, "prompt": prompt_text, "completion": text,
                      "rewards": {name: values[i] for name, values in rewards.items() if i < len(values)},
                      "advantage": advantages[i] if i < len(advantages) else None})
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))


def _drop_completions_from(path: Path, step: int) -> None:
    """Keep only the lines of ``path`` (completions.jsonl) logged before ``step``; a line a killed run left
    half-written is dropped too."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if _logged_step(line) < step]
    if len(kept) != len(lines):
        path.write_text("".join(kept), encoding="utf-8")


def _logged_step(line: str) -> float:
    """The step a completions.jsonl line was logged at; infinity for a line that is not a whole JSON object."""
    try:
        return json.loads(line).get("step", 0) if line.endswith("\n") else float("inf")
    except (json.JSONDecodeError, AttributeError):
        return float("inf")


# The GRPOConfig knobs notebook 05 writes out in its trainer cell; grpo_settings gives the rest.
CELL_KNOBS = ("num_generations", "max_completion_length", "temperature", "beta", "loss_type", "reward_weights",
              "per_device_train_batch_size", "max_steps", "learning_rate", "seed")


def grpo_settings(cfg: GrpoConfig, output_dir: str | Path, vllm: bool) -> dict:
    """The GRPOConfig arguments a notebook leaves to loralab (``grpo_args`` minus ``CELL_KNOBS``): checkpoints,
    precision and device, vLLM, reward scaling, tracking and progress."""
    return {k: v for k, v in grpo_args(cfg, output_dir, vllm).items() if k not in CELL_KNOBS}


def build_grpo_trainer(model, tokenizer, rows: list[dict], rewards: list[Callable], cfg: GrpoConfig,
                       output_dir: str | Path, run_dir: str | Path | None = None, vllm: bool = False,
                       checkpoint: str | Path | None = None):
    """Notebook 05's GRPOTrainer in one call, on prompt rows (``loralab.data.grpo_prompts``) with reward functions
    (``loralab.eval.rewards``). ``run_dir``: where ``completions.jsonl`` goes (None: not written)."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    datasets.disable_progress_bars()
    trainer = GRPOTrainer(model=model, reward_funcs=list(rewards), args=GRPOConfig(**grpo_args(cfg, output_dir, vllm)),
                          train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=run_callbacks(cfg, checkpoint))
    return record_completions(trainer, run_dir, cfg.completions_every) if run_dir else trainer


def reward_log(log_history: list[dict]) -> list[dict]:
    """One entry per logged training step: each reward's mean and std, the summed reward, its spread,
    ``frac_reward_zero_std``, completion length, KL (beta > 0), loss and learning rate."""
    entries = []
    for entry in log_history:
        if "reward" not in entry:
            continue
        kept = {k: entry[k] for k in STEP_KEYS if k in entry}
        kept |= {k: v for k, v in entry.items() if k.startswith("rewards/")}
        entries.append(kept)
    return entries
