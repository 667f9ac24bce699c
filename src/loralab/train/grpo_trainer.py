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
after its last checkpoint is dropped first). Checkpoints are written aside and renamed into place as in notebook
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
        "log_completions": False,  # the table goes to completions.jsonl (CompletionsTable), not to rich/wandb
        "shuffle_dataset": True,
    }


class CompletionsTable:
    """Mixed into GRPOTrainer: every N steps, the sampled completions with their rewards into a JSON Lines file."""

    completions_path: Path | None = None
    completions_every: int = 5

    def log(self, logs: dict, start_time: float | None = None) -> None:
        step = self.state.global_step
        if (self.completions_path is not None and "loss" in logs and step
                and (step % self.completions_every == 0 or step == self.state.max_steps)):
            self._write_completions(step)
        super().log(logs, start_time)

    def _write_completions(self, step: int) -> None:
        if not getattr(self, "_completions_trimmed", False):  # first write of this process: after a resume, drop
            self._completions_trimmed = True                  # what a killed run wrote past its last checkpoint
            _drop_completions_from(self.completions_path, step)
        logged = self._logs
        rewards = {name: list(values) for name, values in logged["rewards"].items()}
        advantages = list(logged["advantages"])
        lines = []
        for i, (prompt, completion) in enumerate(zip(logged["prompt"], logged["completion"])):
            prompt_text = prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)
            text = "".join(m.get("content", "") for m in completion) if isinstance(completion, list) else completion
            lines.append({"step": step, "prompt": prompt_text, "completion": text,
                          "rewards": {name: values[i] for name, values in rewards.items() if i < len(values)},
                          "advantage": advantages[i] if i < len(advantages) else None})
        with self.completions_path.open("a", encoding="utf-8") as out:
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


def build_grpo_trainer(model, tokenizer, rows: list[dict], rewards: list[Callable], cfg: GrpoConfig,
                       output_dir: str | Path, run_dir: str | Path | None = None, vllm: bool = False,
                       checkpoint: str | Path | None = None):
    """A GRPOTrainer for ``model`` on prompt rows (``loralab.data.grpo_prompts``) with reward functions
    (``loralab.eval.rewards``). ``run_dir``: where ``completions.jsonl`` goes (None: not written)."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    datasets.disable_progress_bars()
    args = GRPOConfig(**grpo_args(cfg, output_dir, vllm))
    trainer_class = type("LoralabGRPOTrainer", (CompletionsTable, GRPOTrainer),
                         {"completions_path": Path(run_dir) / COMPLETIONS_FILE if run_dir else None,
                          "completions_every": cfg.completions_every})
    return trainer_class(model=model, reward_funcs=list(rewards), args=args,
                         train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer,
                         callbacks=run_callbacks(cfg, checkpoint))


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
