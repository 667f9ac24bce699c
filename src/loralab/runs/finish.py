"""The last step of a training notebook: write what the run measured, once, into its run folder.

    from loralab.runs.finish import finish_run, finish_preference_run, finish_grpo_run
    model.save_pretrained(run_dir / "adapter"); tokenizer.save_pretrained(run_dir / "adapter")
    metrics = finish_run(run_dir, cfg, trainer, tokenizer, run_dir / "adapter", started=started, tracking=tracking,
        data=data, train_rows=rows, supervision=supervision, train=summary, checkpoint=checkpoint,
        evals=(before, after), retention=(retention_before, retention_after), fingerprints=(f_before, f_after))
    print("wrote", run_dir / "metrics.json")            # notebook 01; 04: finish_preference_run; 05: finish_grpo_run

Notebook 01's also writes ``reference_logits.safetensors`` (the trained model's logits on a probe prompt, to check
a reload later). Each writes three things and returns the metrics dict: ``metrics.json`` (docs/run-folder.md lists its keys;
tests, sweeps, reports and ``loralab run``'s summary line read it, never notebook outputs), the
adapter's ``loralab_manifest.json`` (the base it belongs to, the data, the eval scores) and, with
``report_to``, the tracker's summary (params, scores, adapter folder). ``metrics.json`` comes after the
manifest, because a run folder that has one counts as finished (``loralab.runs.record.find_unfinished_run``).
What the notebook measured comes in as it was measured; what every run records (params, peak memory,
wall time, library and code versions) is taken here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loralab.adapters.manifest import write_manifest
from loralab.adapters.save import note_model_card, save_reference_logits
from loralab.adapters.sft_start import sft_lineage
from loralab.data.supervision import SupervisionReport, supervision_report
from loralab.eval.evaluate import eval_losses, eval_metrics
from loralab.eval.preference import reference_unchanged
from loralab.eval.retention import retention_metrics
from loralab.model.fingerprints import dataset_sha256
from loralab.model.hub_token import describe_token_source
from loralab.model.loading import count_parameters, lora_layer_table
from loralab.model.versions import library_versions
from loralab.runs.folder import peak_memory_gb, write_metrics
from loralab.runs.record import code_version
from loralab.train.checkpoints import checkpoint_step
from loralab.train.tracking import log_run_summary

if TYPE_CHECKING:
    from loralab.eval.evaluate import EvalResult
    from loralab.eval.grpo_data import GrpoData
    from loralab.eval.preference import PreferenceScores
    from loralab.eval.prepare import PreferenceData, RunData
    from loralab.eval.retention import RetentionResult
    from loralab.eval.rewards import HeldOutRewards
    from loralab.params.grpo_config import GrpoConfig
    from loralab.params.preference_config import PreferenceConfig
    from loralab.params.run_config import RunConfig

# The eval keys of notebook 01's metrics that its adapter manifest repeats.
SFT_MANIFEST_EVAL_KEYS = ("eval_loss_before", "eval_loss_after", "eval_scores_before", "eval_scores_after",
                          "eval_source", "retention", "retention_verdict")


def finish_run(run_dir: str | Path, cfg: RunConfig, trainer, tokenizer, adapter_dir: str | Path, *,
               started: float, tracking: dict[str, str], data: RunData, train_rows: list[dict],
               train: dict[str, Any], checkpoint: str | Path | None,
               evals: tuple[EvalResult, EvalResult],
               retention: tuple[RetentionResult | None, RetentionResult | None],
               fingerprints: tuple[dict[str, str], dict[str, str]],
               supervision: SupervisionReport | None = None) -> dict[str, Any]:
    """Notebook 01 (SFT): the reference logits, metrics.json, the adapter manifest and the tracker summary; returns
    the metrics.

    ``started``: ``time.time()`` when the run began (``wall_time_s`` counts from it); ``tracking``: what
    ``point_tracker_at`` returned; ``train_rows``: the training rows as trained (after length fitting);
    ``supervision``: what ``check_supervision`` counted on them (None: counted here, without the dropped rows);
    ``train``: ``train_summary(...)``; ``checkpoint``: the one training resumed from (None: from step 0);
    ``evals``, ``retention``: the results before and after training; ``fingerprints``: ``{"base": ...,
    "lora": ...}`` (``weights_fingerprint``) before and after training. The adapter's size is read from the model.
    """
    model = trainer.model
    trainable_params, total_params = count_parameters(model)
    layers = lora_layer_table(model)
    save_reference_logits(model, tokenizer, Path(run_dir) / "reference_logits.safetensors")
    before, after = evals
    fingerprints_before, fingerprints_after = fingerprints
    metrics = {
        "params": cfg.model_dump(),
        "trainable_params": trainable_params,
        "total_params": total_params,
        "lora_layers": [vars(layer) | {"params": layer.params} for layer in layers],
        "lora_params_sum_r_d_plus_k": sum(layer.params for layer in layers),
        **train,
        "resumed_from_step": checkpoint_step(checkpoint),
        **eval_metrics(before, after, data),
        **retention_metrics(*retention),  # {} without retention_tasks
        "eval_losses": eval_losses(trainer.state.log_history),
        "eval_dataset_sha256": dataset_sha256(data.eval) if data.eval else None,
        "base_fingerprint_before": fingerprints_before["base"],
        "base_fingerprint_after": fingerprints_after["base"],
        "lora_fingerprint_before": fingerprints_before["lora"],
        "lora_fingerprint_after": fingerprints_after["lora"],
        "hub_token_source": describe_token_source(),
        "dataset_sha256": dataset_sha256(train_rows),
        "supervision": (supervision or supervision_report(train_rows, tokenizer, cfg.max_seq_length)).metrics(),
    }
    scores = {key: metrics[key] for key in SFT_MANIFEST_EVAL_KEYS if key in metrics}
    return _write_run_files(run_dir, cfg, trainer, tokenizer, adapter_dir, started, tracking, metrics,
                            train_rows=train_rows, eval_rows=data.eval, scores=scores)


def finish_preference_run(run_dir: str | Path, cfg: PreferenceConfig, trainer, tokenizer,
                          adapter_dir: str | Path, *, started: float, tracking: dict[str, str],
                          data: PreferenceData, train_result, checkpoint: str | Path | None,
                          preference: tuple[PreferenceScores, PreferenceScores],
                          evals: tuple[EvalResult, EvalResult],
                          retention: tuple[RetentionResult | None, RetentionResult | None],
                          base_fingerprints: tuple[str, str],
                          supervision: SupervisionReport | None = None) -> dict[str, Any]:
    """Notebook 04 (DPO, ORPO, KTO): metrics.json, the adapter manifest and the tracker summary.

    ``train_result``: what ``trainer.train()`` returned; ``checkpoint``: the one training resumed from (None:
    from step 0); ``preference``: ``preference_metrics`` on the held-out pairs
    before and after training; ``evals``: the scored generations (``score_model``) before and after;
    ``base_fingerprints``: ``base_weights_fingerprint`` before and after training. The manifest records
    the method, beta and the SFT adapter the run started from (``sft_lineage``) next to the preference
    accuracy; the metrics under ``preference`` too. ``supervision``: ``check_preference_supervision``'s report
    (metrics.json's ``supervision``, counted over the answers). Returns the metrics.
    """
    trainable_params, total_params = adapter_size(trainer.model)
    before, after = preference
    before_gen, after_gen = evals
    lineage = {"method": cfg.method, "beta": cfg.beta,
               "loss_type": cfg.loss_type if cfg.method == "dpo" else None, "sft_adapter": sft_lineage(cfg)}
    metrics = {
        "params": cfg.model_dump(),
        "trainable_params": trainable_params,
        "total_params": total_params,
        **before.as_metrics("before"),
        **after.as_metrics("after"),
        "preference_pairs": after.pairs,
        "reference_logps_max_change": reference_unchanged(before, after),
        **retention_metrics(*retention),
        "eval_scores_before": before_gen.scores,
        "eval_scores_after": after_gen.scores,
        "eval_score_before": before_gen.primary,
        "eval_score_after": after_gen.primary,
        **_training_keys(trainer, train_result, checkpoint, base_fingerprints, data.train),
        "eval_dataset_sha256": dataset_sha256(data.eval_pairs) if data.eval_pairs else None,
        "preference": lineage,
        "supervision": supervision.metrics() if supervision is not None else None,
    }
    scores = {key: value for key, value in metrics.items() if key.startswith("preference_accuracy")}
    return _write_run_files(run_dir, cfg, trainer, tokenizer, adapter_dir, started, tracking, metrics,
                            train_rows=data.train, eval_rows=data.eval_pairs, scores=scores,
                            manifest_extra={"preference": lineage})


def finish_grpo_run(run_dir: str | Path, cfg: GrpoConfig, trainer, tokenizer, adapter_dir: str | Path, *,
                    started: float, tracking: dict[str, str], data: GrpoData, train_result,
                    checkpoint: str | Path | None,
                    heldout: tuple[HeldOutRewards, HeldOutRewards], preflight: dict[str, float],
                    base_fingerprints: tuple[str, str]) -> dict[str, Any]:
    """Notebook 05 (GRPO): metrics.json, the adapter manifest and the tracker summary; returns the metrics.

    ``heldout``: ``score_heldout`` on the held-out prompts before and after training (each reward's mean
    and the weighted total); ``preflight``: each reward on the pre-flight completion; the reward log
    (``loralab.train.grpo_trainer.reward_log``) is taken from the trainer. The manifest records the
    rewards, their weights, beta, the generations per prompt and the SFT adapter the run started from.
    """
    from loralab.train.grpo_trainer import COMPLETIONS_FILE, reward_log

    trainable_params, total_params = adapter_size(trainer.model)
    before, after = heldout
    steps = reward_log(trainer.state.log_history)
    lineage = {"method": "grpo", "rewards": data.reward_names, "reward_weights": data.weights,
               "beta": cfg.beta, "num_generations": cfg.num_generations, "sft_adapter": sft_lineage(cfg)}
    metrics = {
        "params": cfg.model_dump(),
        "trainable_params": trainable_params,
        "total_params": total_params,
        "reward_before": before.total,
        "reward_after": after.total,
        "rewards_before": before.scores,
        "rewards_after": after.scores,
        "eval_score_before": before.total,  # the weighted held-out reward: what sweeps and summaries compare
        "eval_score_after": after.total,
        "eval_scores_before": before.scores,  # each reward apart, as notebook 01's scorers: a sweep's "<reward> after"
        "eval_scores_after": after.scores,
        "eval_examples": len(after.replies),
        "eval_source": data.source,
        "eval_rows_leaked": data.leaked,
        "reward_preflight": preflight,
        "reward_log": steps,
        "frac_reward_zero_std_mean": (sum(s.get("frac_reward_zero_std", 0.0) for s in steps) / len(steps)
                                      if steps else None),
        "completions_file": str(Path(run_dir) / COMPLETIONS_FILE),
        **_training_keys(trainer, train_result, checkpoint, base_fingerprints, data.train),
        "eval_dataset_sha256": dataset_sha256(data.heldout) if data.heldout else None,
        "grpo": lineage,
    }
    scores = {"reward_before": before.total, "reward_after": after.total, "rewards_after": after.scores}
    return _write_run_files(run_dir, cfg, trainer, tokenizer, adapter_dir, started, tracking, metrics,
                            train_rows=data.train, eval_rows=data.heldout, scores=scores,
                            manifest_extra={"grpo": lineage})


def adapter_size(model) -> tuple[int, int]:
    """(weights of the trained adapter ``default``, all weights of the model), whatever ``requires_grad`` a
    preference or GRPO trainer left on other tensors."""
    return sum(layer.params for layer in lora_layer_table(model)), count_parameters(model)[1]


def _training_keys(trainer, train_result, checkpoint: str | Path | None, base_fingerprints: tuple[str, str],
                   train_rows: list) -> dict[str, Any]:
    """The metrics of how notebooks 04 and 05 trained: losses, runtime, resume, the frozen base, the data."""
    return {
        "train_losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
        "train_runtime_s": train_result.metrics.get("train_runtime"),
        "resumed_from_step": checkpoint_step(checkpoint),
        "base_fingerprint_before": base_fingerprints[0],
        "base_fingerprint_after": base_fingerprints[1],
        "dataset_sha256": dataset_sha256(train_rows),
    }


def _write_run_files(run_dir: str | Path, cfg: Any, trainer, tokenizer, adapter_dir: str | Path,
                     started: float, tracking: dict[str, str], metrics: dict[str, Any], train_rows: list[dict],
                     eval_rows: list[dict], scores: dict[str, Any],
                     manifest_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add what every run records; note a 4-bit base in the adapter's model card; write the manifest, then
    metrics.json, then the tracker summary."""
    note_model_card(trainer.model, adapter_dir)
    metrics = metrics | {
        **peak_memory_gb(),
        "wall_time_s": time.time() - started,
        "versions": library_versions(),
        "code_version": code_version(),
        "adapter_dir": str(adapter_dir),
        "tracking": tracking,
    }
    metrics["manifest"] = str(write_manifest(adapter_dir, cfg, tokenizer=tokenizer, dataset_rows=train_rows,
                                             eval_scores=scores, extra=manifest_extra, eval_rows=eval_rows))
    write_metrics(run_dir, metrics)
    log_run_summary(trainer, cfg, metrics)  # params, scores and adapter path to the tracker (report_to)
    return metrics
