"""Training-path benchmark: loralab vs raw Unsloth vs plain transformers + PEFT + TRL.

    make bench                                   # defaults below, prints the table and ratios
    .venv/bin/python bench/train_bench.py --rounds 3 --steps 10 -b 8 -s 256 --out a.json
    .venv/bin/python bench/train_bench.py --configs loralab,unsloth --rounds 8 --out b.json
    .venv/bin/python bench/train_bench.py --report a.json b.json   # pool the rounds of earlier runs

Every configuration trains the same model on the same data with the same settings (sequence length,
batch, r, alpha, targets, optimizer, gradient checkpointing, seed, thread count) in a FRESH
subprocess; the rounds alternate the order of the configurations so drift on a shared machine hits
them all. Reported per configuration (median over rounds): tokens/s over the timed steps (non-padding
tokens, warm-up steps skipped), peak memory (RSS on CPU, max allocated on CUDA), time from process
start to the end of the first step, and the first step's loss (equal losses show the runs are
comparable). Ratios are printed against plain TRL + PEFT (16-bit) and against raw Unsloth, then
whether loralab's path is within TOLERANCE (3%) of raw Unsloth in tokens/s and peak memory, and the
tokens/s range over the rounds (one process differs from the next by several percent on a shared
CPU, so a 3% question needs many rounds: ``--report`` pools the rounds of earlier ``--out`` files).
Dataset caching is off in every worker, so each path tokenizes its data afresh.

  loralab     loralab.model.loading.load_model / attach_lora + loralab.train.trainer.build_trainer
  unsloth     FastLanguageModel.from_pretrained / get_peft_model + TRL SFTTrainer, no loralab code
  trl_4bit    transformers + bitsandbytes NF4 + PEFT + TRL, no Unsloth
  trl_16bit   transformers + PEFT + TRL, no Unsloth, no quantization

TRL 1.15's SFTTrainer computes its loss with a Triton kernel (a fused LM head) that has no CPU
driver, so without Unsloth it cannot train on a CPU. The trl_* configurations therefore use TRL for
what it does without a GPU (tokenization, completion masks, the collator: the exact batches the
other configurations see) and transformers' own Trainer and causal-LM loss for the step. On a CUDA
GPU they use SFTTrainer itself.

The same script runs on a CUDA GPU unchanged: it detects the device (bf16 where supported).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = ("loralab", "unsloth", "trl_4bit", "trl_16bit")
TOLERANCE = 0.03  # the target: loralab's path within 3% of raw Unsloth in tokens/s and peak memory
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _dataset(path: str):
    from datasets import load_dataset

    rows = load_dataset("json", data_files=path, split="train")
    return rows.map(lambda r: {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]},
                    remove_columns=rows.column_names)


def _sft_config(args, cuda: bool, bf16: bool):
    from trl import SFTConfig

    return SFTConfig(
        output_dir="/tmp/loralab-bench", max_length=args.seq, per_device_train_batch_size=args.batch,
        max_steps=args.warmup + args.steps, learning_rate=2e-4, warmup_steps=0, optim="adamw_torch",
        seed=3407, data_seed=3407, logging_steps=1, completion_only_loss=True, gradient_checkpointing=False,
        save_strategy="no", report_to="none", disable_tqdm=True, bf16=bf16, fp16=cuda and not bf16,
        use_cpu=not cuda, dataset_num_proc=1,
    )


def worker(name: str, args) -> dict:
    """Train one configuration in this process and return its measurements."""
    started = time.time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if name in ("loralab", "unsloth"):
        import unsloth  # noqa: F401
    import datasets
    import torch

    # Every path tokenizes its data afresh: a `load_dataset` + `map` pipeline would otherwise reuse
    # the tokenized rows cached by an earlier round, and only its time to the first step would drop.
    datasets.disable_caching()
    from transformers import TrainerCallback

    torch.set_num_threads(args.threads)
    from loralab.data.json_answers import data_file
    from loralab.model.embedded import resolve_model_path

    path = resolve_model_path("embedded/smollm2-135m-instruct")
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    dtype = torch.bfloat16 if bf16 else (torch.float16 if cuda else torch.float32)

    if name == "loralab":
        from loralab.data.chat_rows import load_chat_rows, to_prompt_completion
        from loralab.model.loading import attach_lora, load_model
        from loralab.params.run_config import validate_params
        from loralab.train.trainer import build_trainer

        cfg = validate_params({"max_seq_length": args.seq, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                               "use_gradient_checkpointing": False, "max_steps": args.warmup + args.steps,
                               "per_device_train_batch_size": args.batch, "learning_rate": 2e-4, "warmup_steps": 0,
                               "seed": 3407, "logging_steps": 1, "optim": "adamw_torch"})
        model, tokenizer = load_model(cfg)
        model = attach_lora(model, cfg)
        trainer = build_trainer(model, tokenizer, to_prompt_completion(load_chat_rows(cfg.dataset)), cfg,
                                "/tmp/loralab-bench")
    else:
        from peft import LoraConfig, get_peft_model
        from trl import SFTTrainer

        if name == "unsloth":
            from unsloth import FastLanguageModel

            model, tokenizer = FastLanguageModel.from_pretrained(path, max_seq_length=args.seq, dtype=None,
                                                                 load_in_4bit=True,
                                                                 use_gradient_checkpointing=False)
            model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0.0,
                                                     target_modules=TARGETS, use_gradient_checkpointing=False,
                                                     random_state=3407)
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

            quant = None
            if name == "trl_4bit":
                quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                           bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, quantization_config=quant,
                                                         device_map="cuda" if cuda else "cpu")
            for module in model.modules():  # the AVX512-BF16 repacking pitfall (DESIGN.md)
                if hasattr(module, "support_avx512bf16_for_cpu"):
                    module.support_avx512bf16_for_cpu = False
            tokenizer = AutoTokenizer.from_pretrained(path)
            torch.manual_seed(3407)
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                                     task_type="CAUSAL_LM"))
        sft_args = _sft_config(args, cuda, bf16)
        trainer = SFTTrainer(model=model, args=sft_args, train_dataset=_dataset(str(data_file("train"))),
                             processing_class=tokenizer)
        if not cuda and name != "unsloth":
            from transformers import Trainer

            trainer = Trainer(model=model, args=sft_args, train_dataset=trainer.train_dataset,
                              data_collator=trainer.data_collator)

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *a, **k):
            self.ends.append(time.time())

    clock = StepClock()
    trainer.add_callback(clock)
    batch_tokens: list[int] = []  # non-padding tokens of each batch, counted the same way for every config
    collate = trainer.data_collator

    def counting_collator(features):
        batch = collate(features)
        batch_tokens.append(int(batch["attention_mask"].sum()))
        return batch

    trainer.data_collator = counting_collator
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    timed_tokens = sum(batch_tokens[args.warmup:args.warmup + args.steps])
    timed_seconds = clock.ends[-1] - clock.ends[args.warmup - 1]
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": name, "tokens_per_s": timed_tokens / timed_seconds, "peak_gb": peak / 1e9,
            "first_step_s": clock.ends[0] - started, "first_loss": logs[0]["loss"],
            "device": torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} threads"}


def medians(results: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per configuration, the median of each measurement over its rounds."""
    keys = ("tokens_per_s", "peak_gb", "first_step_s", "first_loss")
    return {c: {k: statistics.median(r[k] for r in rs) for k in keys} for c, rs in results.items() if rs}


def against_unsloth(med: dict[str, dict[str, float]]) -> tuple[float, float, bool] | None:
    """(speed ratio, memory ratio, within the target) of loralab's path over raw Unsloth's, if both ran.

    Faster or leaner than raw Unsloth never misses the target; slower or heavier by more than
    TOLERANCE does.
    """
    if "loralab" not in med or "unsloth" not in med:
        return None
    speed = med["loralab"]["tokens_per_s"] / med["unsloth"]["tokens_per_s"]
    memory = med["loralab"]["peak_gb"] / med["unsloth"]["peak_gb"]
    return speed, memory, speed >= 1 - TOLERANCE and memory <= 1 + TOLERANCE


def print_report(results: dict[str, list[dict]], settings: dict) -> None:
    """The medians table with ratios, the verdict against raw Unsloth and the spread over rounds."""
    med = medians(results)
    rounds = "/".join(sorted({str(len(rs)) for rs in results.values()}))
    device = next(iter(results.values()))[0]["device"]
    print(f"\nmedians over {rounds} rounds, {settings['steps']} timed steps after {settings['warmup']} warm-up, "
          f"batch {settings['batch']}, seq {settings['seq']}, r=16 all-linear, {device}")
    header = f"{'config':10s} {'tok/s':>8s} {'peak GB':>8s} {'1st step s':>10s} {'1st loss':>9s}"
    for ref in ("trl_16bit", "unsloth"):
        if ref in med:
            header += f" {'speed/' + ref:>16s} {'mem/' + ref:>14s}"
    print(header)
    for c, m in med.items():
        row = f"{c:10s} {m['tokens_per_s']:8.1f} {m['peak_gb']:8.2f} {m['first_step_s']:10.0f} {m['first_loss']:9.4f}"
        for ref in ("trl_16bit", "unsloth"):
            if ref in med:
                row += f" {m['tokens_per_s'] / med[ref]['tokens_per_s']:16.2f} {m['peak_gb'] / med[ref]['peak_gb']:14.2f}"
        print(row)
    verdict = against_unsloth(med)
    if verdict:
        speed, memory, ok = verdict
        print(f"\nloralab vs raw Unsloth: {speed:.3f}x the tokens/s, {memory:.3f}x the peak memory; "
              f"within {TOLERANCE:.0%}: {'yes' if ok else 'NO'}")
    print("tokens/s range over the rounds: " + ", ".join(
        f"{c} {min(r['tokens_per_s'] for r in rs):.1f}-{max(r['tokens_per_s'] for r in rs):.1f}"
        for c, rs in results.items()))


def pooled(paths: list[str]) -> tuple[dict[str, list[dict]], dict]:
    """The rounds of earlier ``--out`` files, pooled per configuration (their settings must agree)."""
    results: dict[str, list[dict]] = {}
    settings: dict | None = None
    for path in paths:
        with open(path) as handle:
            saved = json.load(handle)
        these = {k: saved["args"][k] for k in ("steps", "warmup", "batch", "seq", "threads")}
        if settings is not None and these != settings:
            raise SystemExit(f"{path} was measured with {these}, the files before it with {settings}: "
                             "only runs with the same settings can be pooled")
        settings = these
        for c, rs in saved["runs"].items():
            results.setdefault(c, []).extend(rs)
    return results, settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--rounds", type=int, default=2, help="fresh-process runs per configuration")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--per-device-train-batch-size", "-b", dest="batch", type=int, default=4,
                        help="rows per step (default 4)")
    parser.add_argument("--max-seq-length", "-s", dest="seq", type=int, default=256,
                        help="max length in tokens (default 256)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--report", nargs="+", metavar="JSON",
                        help="run nothing: print the table for earlier --out files, their rounds pooled")
    if "--worker" not in sys.argv:  # a worker imports nothing before its clock starts
        from loralab.plan.cli import renamed_flag  # an old option name: refused, naming the new one

        old = renamed_flag(sys.argv[1:], ("--per-device-train-batch-size", "--max-seq-length"))
        if old:
            parser.error(old)
    args = parser.parse_args()
    if args.worker:
        print("BENCH_RESULT " + json.dumps(worker(args.worker, args)), flush=True)
        return 0
    if args.report:
        print_report(*pooled(args.report))
        return 0

    configs = [c.strip() for c in args.configs.split(",")]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; choose from {', '.join(CONFIGS)}")
    results: dict[str, list[dict]] = {c: [] for c in configs}
    for round_no in range(args.rounds):
        order = configs if round_no % 2 == 0 else configs[::-1]
        for name in order:
            cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "-b", str(args.batch), "-s", str(args.seq), "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("BENCH_RESULT ")), None)
            if line is None:
                print(f"{name}: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
                return 1
            results[name].append(json.loads(line.removeprefix("BENCH_RESULT ")))
            r = results[name][-1]
            print(f"round {round_no + 1} {name:10s} {r['tokens_per_s']:7.1f} tok/s  {r['peak_gb']:.2f} GB  "
                  f"first step {r['first_step_s']:.0f} s  loss {r['first_loss']:.4f}", flush=True)

    print_report(results, vars(args))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"args": vars(args), "runs": results, "medians": medians(results)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
