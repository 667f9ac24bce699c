"""Realistic-length benchmark: useful tokens/s, padding share and roofline fraction, packing modes included.

    make bench                                                       # train_bench.py, then this
    .venv/bin/python bench/packing_bench.py --rounds 2 --steps 3 --out bench/results/packing.json
    .venv/bin/python bench/packing_bench.py --report a.json b.json  # pool the rounds of earlier runs

The rows (bench/chat_lengths.py) have the lengths of LMSYS-Chat-1M conversations (templated: median
480 tokens, mean 560, 14% over 1024), not the embedded task's 51-57 tokens, so padding shows. Every
configuration trains the embedded model on the same rows, with the same r=16 all-linear LoRA, optimizer,
seed and max length, in a FRESH subprocess, the rounds alternating the order:

  loralab          loralab's path with its default packing (RunConfig.packing)
  loralab_2x2      ... the same, batched as Unsloth's notebooks batch: 2 rows x (batch / 2) accumulation
  loralab_none     ... packing: none (rows padded to the batch's longest)
  loralab_padding_free, loralab_packed    ... the other two layouts
  loralab_masked   ... the default, with transformers' sdpa block-diagonal mask instead of loralab's row
                   attention (loralab.model.row_attention): what row attention saves
  unsloth          raw Unsloth as its notebooks configure it: FastLanguageModel 4-bit, SFTTrainer with
                   per_device_train_batch_size 2 x gradient_accumulation_steps (batch / 2), no packing
  trl_16bit        plain transformers + PEFT + TRL with TRL's defaults (padded batches, no packing), 16-bit
                   base; on a CPU its step runs in transformers' Trainer (train_bench.py says why)

Reported per configuration (median over rounds): useful tokens/s (prompt + answer tokens, pads not
counted; the answer tokens, which carry the loss, also alone), the padding share of the tokens fed,
rows/s, peak memory (RSS on CPU, max allocated on CUDA), time to the first step, and the achieved FLOP/s
as a fraction of this machine's matmul roofline, measured in the same run at the model's own layer
shapes (``roofline``): achieved = (6 N per useful token + 12 L d T^2 per row of T tokens, the PaLM
paper's attention term) / time, with N the weights every token is multiplied by (the 30 blocks' linear
layers and the LM head, 134.5M for the embedded model). loralab's time before its first step is broken
down (imports, model load, LoRA attach, data preparation, the first step itself).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ("loralab", "loralab_2x2", "loralab_none", "loralab_padding_free", "loralab_packed", "loralab_masked",
           "unsloth", "trl_16bit")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MARKS = ("imports", "model load", "LoRA attach", "data preparation", "first step")


def model_flops(config: dict) -> tuple[int, int]:
    """(N, attention FLOPs per row per T^2): N = weights each token meets in the blocks' linears + LM head."""
    d, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    kv = config["num_key_value_heads"] * (d // config["num_attention_heads"])
    per_layer = 2 * d * d + 2 * d * kv + 3 * d * inner
    return layers * per_layer + d * config["vocab_size"], 12 * layers * d


def roofline(config: dict, threads: int, dtype_name: str, tokens: int = 2048, repeats: int = 10) -> float:
    """Practical matmul FLOP/s of this machine at the model's layer shapes (weighted as one token's pass).

    Each shape's best time over ``repeats`` calls: what the machine can do when nothing else runs.
    """
    import torch

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    d, inner = config["hidden_size"], config["intermediate_size"]
    kv = config["num_key_value_heads"] * (d // config["num_attention_heads"])
    shapes = {(d, d): 2 * config["num_hidden_layers"], (d, kv): 2 * config["num_hidden_layers"],
              (d, inner): 2 * config["num_hidden_layers"], (inner, d): config["num_hidden_layers"],
              (d, config["vocab_size"]): 1}
    flops = seconds = 0.0
    for (k, n), count in shapes.items():
        x, w = torch.randn(tokens, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        x @ w  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            x @ w
            times.append(time.perf_counter() - start)
        per_call = min(times)
        flops += count * 2 * tokens * k * n
        seconds += count * per_call
    return flops / seconds


def _rows(args) -> list[dict]:
    sys.path.insert(0, HERE)
    from chat_lengths import chat_rows
    from transformers import AutoTokenizer

    from loralab.model.embedded import resolve_model_path

    return chat_rows(AutoTokenizer.from_pretrained(resolve_model_path("embedded/smollm2-135m-instruct")),
                     args.rows, seed=0)


def worker(name: str, args) -> dict:
    """Train one configuration in this process; return its measurements."""
    started = time.time()
    marks = {}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if name != "trl_16bit":
        import unsloth  # noqa: F401
    import datasets
    import torch
    from transformers import TrainerCallback

    datasets.disable_caching()
    torch.set_num_threads(args.threads)
    from loralab.data.chat_rows import to_prompt_completion
    from loralab.model.embedded import resolve_model_path

    path = resolve_model_path("embedded/smollm2-135m-instruct")
    cuda = torch.cuda.is_available()
    rows = _rows(args)
    marks["imports"] = time.time()
    batch, accumulation = args.batch, 1
    if name.startswith("loralab"):
        from loralab.model.loading import attach_lora, load_model
        from loralab.params.run_config import validate_params
        from loralab.train.trainer import build_trainer

        if name == "loralab_2x2":
            batch, accumulation = 2, max(1, args.batch // 2)
        params = {"max_seq_length": args.seq, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
                  "use_gradient_checkpointing": False, "max_steps": args.warmup + args.steps,
                  "per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation,
                  "learning_rate": 2e-4, "warmup_steps": 0, "seed": 3407,
                  "logging_steps": 1, "optim": "adamw_torch", "save_steps": 0}
        if name == "loralab_masked":  # the default without row attention: transformers' block-diagonal mask
            import loralab.train.trainer

            loralab.train.trainer.use_row_attention = lambda model: False
        elif name not in ("loralab", "loralab_2x2"):
            params["packing"] = name.removeprefix("loralab_")
        cfg = validate_params(params)
        model, tokenizer = load_model(cfg)
        marks["model load"] = time.time()
        model = attach_lora(model, cfg)
        marks["LoRA attach"] = time.time()
        trainer = build_trainer(model, tokenizer, to_prompt_completion(rows), cfg, "/tmp/loralab-bench")
        packing = cfg.packing
    else:
        from peft import LoraConfig, get_peft_model
        from trl import SFTConfig, SFTTrainer

        if name == "unsloth":
            from unsloth import FastLanguageModel

            model, tokenizer = FastLanguageModel.from_pretrained(path, max_seq_length=args.seq, dtype=None,
                                                                 load_in_4bit=True, use_gradient_checkpointing=False)
            model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0.0,
                                                     target_modules=TARGETS, use_gradient_checkpointing=False,
                                                     random_state=3407)
            batch, accumulation = 2, max(1, args.batch // 2)  # Unsloth's notebooks: 2 x 4
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map="cuda" if cuda else "cpu")
            tokenizer = AutoTokenizer.from_pretrained(path)
            torch.manual_seed(3407)
            model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                                     task_type="CAUSAL_LM"))
        marks["model load"] = marks["LoRA attach"] = time.time()
        bf16 = cuda and torch.cuda.is_bf16_supported()
        sft_args = SFTConfig(output_dir="/tmp/loralab-bench", max_length=args.seq, per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accumulation, max_steps=args.warmup + args.steps,
                             learning_rate=2e-4, warmup_steps=0, optim="adamw_torch", seed=3407, data_seed=3407,
                             logging_steps=1, gradient_checkpointing=False, save_strategy="no", report_to="none",
                             disable_tqdm=True, bf16=bf16, fp16=cuda and not bf16, use_cpu=not cuda,
                             dataset_num_proc=1)
        trainer = SFTTrainer(model=model, args=sft_args, train_dataset=to_prompt_completion(rows),
                             processing_class=tokenizer)
        if not cuda and name == "trl_16bit":
            from transformers import Trainer

            trainer = Trainer(model=model, args=sft_args, train_dataset=trainer.train_dataset,
                              data_collator=trainer.data_collator)
        packing = "none"
    marks["data preparation"] = time.time()

    class StepClock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_train_begin(self, *a, **k):
            self.begin = time.time()

        def on_step_end(self, *a, **k):
            self.ends.append(time.time())

    clock = StepClock()
    trainer.add_callback(clock)
    counts: list[dict] = []  # per micro-batch: tokens fed, real tokens, answer tokens, rows, attention FLOPs
    collate = trainer.data_collator

    def counting_collator(features):
        out = collate(features)
        fed = out["input_ids"].numel()
        real = int(out["attention_mask"].sum()) if "attention_mask" in out else fed
        if "position_ids" in out and "attention_mask" not in out:
            starts = (out["position_ids"][0] == 0).nonzero().flatten().tolist() + [out["position_ids"].shape[1]]
            lengths = [b - a for a, b in itertools.pairwise(starts)]
        elif "attention_mask" in out:
            lengths = out["attention_mask"].sum(dim=1).tolist()
        else:
            lengths = [out["input_ids"].shape[1]] * out["input_ids"].shape[0]
        counts.append({"fed": fed, "real": real, "answer": int((out["labels"][:, 1:] != -100).sum()),
                       "rows": len(lengths), "t2": sum(n * n for n in lengths)})
        return out

    trainer.data_collator = counting_collator
    trainer.train()
    timed = counts[args.warmup * accumulation:(args.warmup + args.steps) * accumulation]
    seconds = clock.ends[-1] - clock.ends[args.warmup - 1]
    total = {k: sum(c[k] for c in timed) for k in ("fed", "real", "answer", "rows", "t2")}
    config = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(model.config)
    n, attention = model_flops(config)
    peak = (torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    marks["first step"] = clock.ends[0]
    breakdown, previous = {}, started
    for mark in MARKS:
        breakdown[mark] = marks[mark] - previous
        previous = marks[mark]
    compute = next(p.dtype for p in model.parameters() if p.dtype.is_floating_point and not p.requires_grad)
    return {"config": name, "packing": packing, "batch": f"{batch} x {accumulation}",
            "useful_tokens_per_s": total["real"] / seconds, "answer_tokens_per_s": total["answer"] / seconds,
            "rows_per_s": total["rows"] / seconds, "padding_share": 1 - total["real"] / total["fed"],
            "flops_per_s": (6 * n * total["real"] + attention * total["t2"]) / seconds, "n_flops": n,
            "compute_dtype": str(compute).removeprefix("torch."), "peak_gb": peak / 1e9,
            "first_step_s": clock.ends[0] - started, "breakdown": breakdown,
            "first_loss": next(h["loss"] for h in trainer.state.log_history if "loss" in h),
            "device": torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} threads"}


def medians(results: dict[str, list[dict]]) -> dict[str, dict]:
    keys = ("useful_tokens_per_s", "answer_tokens_per_s", "rows_per_s", "padding_share", "flops_per_s", "peak_gb",
            "first_step_s")
    out = {}
    for c, rs in results.items():
        if rs:
            out[c] = {k: statistics.median(r[k] for r in rs) for k in keys}
            out[c].update({k: rs[0][k] for k in ("packing", "batch", "compute_dtype")})
            out[c]["breakdown"] = {m: statistics.median(r["breakdown"][m] for r in rs) for m in MARKS}
    return out


def print_report(results: dict[str, list[dict]], rooflines: dict[str, float], settings: dict) -> None:
    med = medians(results)
    rounds = "/".join(sorted({str(len(rs)) for rs in results.values()}))
    device = next(iter(results.values()))[0]["device"]
    print(f"\nrealistic lengths (LMSYS-Chat-1M), {settings['rows']} rows, max length {settings['seq']}, batch "
          f"{settings['batch']}, medians over {rounds} rounds of {settings['steps']} timed steps after "
          f"{settings['warmup']} warm-up, r=16 all-linear, {device}")
    print("roofline (matmul at the model's layer shapes): " + ", ".join(
        f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rooflines.items()))
    refs = [r for r in ("unsloth", "trl_16bit") if r in med]
    header = (f"{'config':22s} {'packing':13s} {'batch':6s} {'useful tok/s':>12s} {'answer tok/s':>12s} "
              f"{'pad share':>9s} {'peak GB':>8s} {'roofline':>8s}")
    header += "".join(f" {'x ' + r:>11s} {'mem/' + r:>11s}" for r in refs)
    print(header)
    for c, m in med.items():
        fraction = m["flops_per_s"] / rooflines.get(m["compute_dtype"], float("nan"))
        row = (f"{c:22s} {m['packing']:13s} {m['batch']:6s} {m['useful_tokens_per_s']:12.1f} "
               f"{m['answer_tokens_per_s']:12.1f} {m['padding_share']:9.1%} {m['peak_gb']:8.2f} {fraction:8.1%}")
        for r in refs:
            row += (f" {m['useful_tokens_per_s'] / med[r]['useful_tokens_per_s']:11.2f}"
                    f" {m['peak_gb'] / med[r]['peak_gb']:11.2f}")
        print(row)
    print()
    for name in ("loralab", "loralab_masked"):  # the default, and the default without row attention
        if name in med:
            b = med[name]["breakdown"]
            print(f"{name}, seconds before the first step ends: " + ", ".join(f"{k} {v:.1f}" for k, v in b.items())
                  + f" (total {sum(b.values()):.1f})")
    print("useful tok/s range over the rounds: " + ", ".join(
        f"{c} {min(r['useful_tokens_per_s'] for r in rs):.0f}-{max(r['useful_tokens_per_s'] for r in rs):.0f}"
        for c, rs in results.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--per-device-train-batch-size", "-b", dest="batch", type=int, default=4,
                        help="rows per optimizer step")
    parser.add_argument("--max-seq-length", "-s", dest="seq", type=int, default=1024, help="max length (tokens)")
    parser.add_argument("--rows", type=int, default=64, help="rows generated (bench/chat_lengths.py)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--report", nargs="+", metavar="JSON", help="print the table for earlier --out files, pooled")
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
        results: dict[str, list[dict]] = {}
        measured: dict[str, list[float]] = {}
        for path in args.report:
            with open(path) as handle:
                saved = json.load(handle)
            for c, rs in saved["runs"].items():
                results.setdefault(c, []).extend(rs)
            for dtype, value in saved["rooflines"].items():
                measured.setdefault(dtype, []).append(value)
        print_report(results, {k: statistics.median(v) for k, v in measured.items()}, saved["args"])
        return 0
    configs = [c.strip() for c in args.configs.split(",")]
    if set(configs) - set(CONFIGS):
        parser.error(f"unknown configs {sorted(set(configs) - set(CONFIGS))}; choose from {', '.join(CONFIGS)}")
    from loralab.model.embedded import resolve_model_path

    with open(os.path.join(resolve_model_path("embedded/smollm2-135m-instruct"), "config.json")) as handle:
        model_config = json.load(handle)
    results = {c: [] for c in configs}
    rooflines: dict[str, list[float]] = {}
    for round_no in range(args.rounds):
        for name in (configs if round_no % 2 == 0 else configs[::-1]):
            cmd = [sys.executable, __file__, "--worker", name, "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "-b", str(args.batch), "-s", str(args.seq), "--rows", str(args.rows),
                   "--threads", str(args.threads)]
            with tempfile.TemporaryDirectory() as cwd:  # Unsloth writes its compile cache into the working folder
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=cwd)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
            if line is None:
                print(f"{name}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}")
                return 1
            r = json.loads(line.removeprefix("BENCH_RESULT "))
            results[name].append(r)
            print(f"round {round_no + 1} {name:22s} {r['useful_tokens_per_s']:7.1f} useful tok/s, pad "
                  f"{r['padding_share']:.0%}, {r['peak_gb']:.2f} GB, first step {r['first_step_s']:.0f} s", flush=True)
        # the matmul roofline in the dtypes the paths computed in (a CPU without bf16 emulates it, far slower)
        for dtype in sorted({r["compute_dtype"] for runs in results.values() for r in runs}):
            rooflines.setdefault(dtype, []).append(roofline(model_config, args.threads, dtype))
    median_rooflines = {k: statistics.median(v) for k, v in rooflines.items()}
    print_report(results, median_rooflines, vars(args))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"args": vars(args), "runs": results, "rooflines": median_rooflines,
                       "medians": medians(results)}, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
