"""GPU check: QLoRA and 16-bit LoRA steps on a random-weight model of a real architecture's shape.

    python bench/gpu_check.py --out $OUT/gpu_check.json                         # CUDA machine, every path
    .venv/bin/python bench/gpu_check.py --shape tiny --out /tmp/gpu_check.json  # CPU, tiny shape (the test)
    python bench/gpu_check.py --paths hf_qlora,hf_lora16                        # only the paths asked for
    python bench/gpu_check.py --layers 8 --model-dir build/gpu-check-model      # 8 blocks; folder kept, reused

A machine that lacks unsloth, TRL, datasets or bitsandbytes gets them as wheels with
``scripts/gpu_wheels.py`` (download here, install there) before it runs this.

The model is built from a config only (``transformers.LlamaConfig`` with Llama-3.1-8B's shape, or a
tiny shape for a CPU), with random weights and a word-level tokenizer over the model's vocabulary,
saved once to a temporary folder; training data are random token ids. Speed and memory depend on
shape, not on weights. ``--layers N`` keeps the shape with fewer blocks (a quicker check). Four paths, each in a fresh
subprocess so that peaks do not mix:

  loralab_qlora   loralab.model.loading.load_model / attach_lora + loralab.train.trainer.build_trainer, 4-bit
  loralab_lora16  the same with a 16-bit base (load_in_4bit: false)
  hf_qlora        transformers + bitsandbytes NF4 + PEFT, TRL's SFTTrainer on a GPU (transformers' Trainer
                  on a CPU, where TRL's fused LM head has no kernel, or where TRL is not installed)
  hf_lora16       the same with a 16-bit base

A path whose packages are missing (no unsloth: no loralab path; no bitsandbytes: no QLoRA) is reported
as ``skipped: <reason>`` and the others still run, but the check then exits 1: a path asked for (all four
unless ``--paths`` names fewer) that did not run is not a pass. Per path: tokens/s over the timed steps (warm-up
steps skipped), peak memory during training (``torch.cuda.max_memory_allocated`` on CUDA, peak RSS on
a CPU), the planner's estimate for the same setting (``loralab.plan.memory.estimate_memory``) next to
it, and MFU against the GPU's spec sheet. The table goes to stdout, everything to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # loralab without an install (a GPU machine gets a bare checkout)

PATHS = ("loralab_qlora", "loralab_lora16", "hf_qlora", "hf_lora16")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RESULT = "GPU_CHECK_RESULT "
PLANNER_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}  # torch dtype -> planner's name

# Llama-3.1-8B: https://huggingface.co/meta-llama/Llama-3.1-8B/blob/main/config.json (the same numbers
# as loralab.plan.architectures' "llama-3.1-8b" entry, 8,030,261,248 parameters).
SHAPES: dict[str, dict] = {
    "llama-3.1-8b": {
        "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
    },
    # A Llama block small enough for 2 CPU cores in seconds (head_dim 16, grouped-query attention kept).
    "tiny": {
        "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 1024, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False,
    },
}
# Per shape: batch, seq, timed steps, warm-up steps, CPU threads (the command line overrides each). The
# tiny shape's matmuls gain nothing from a second thread, and on a shared 2-core machine OpenMP's waiting
# threads made its steps 40x slower (1.04 s instead of 0.027 s).
RUN_DEFAULTS: dict[str, dict[str, int]] = {
    "llama-3.1-8b": {"batch": 4, "seq": 2048, "steps": 5, "warmup": 2, "threads": os.cpu_count() or 1},
    "tiny": {"batch": 2, "seq": 64, "steps": 3, "warmup": 1, "threads": 1},
}

# Dense (no sparsity) 16-bit tensor-core peaks from NVIDIA's spec sheets; the sheets print the sparse
# figure, twice these. T4 has no bf16: its figure is FP16 (mixed precision). Matched on
# torch.cuda.get_device_name(), first match wins (so "H100 PCIe" before "H100").
SPEC_SHEETS: tuple[tuple[str, float, str], ...] = (
    (r"H200 NVL", 835.0, "NVIDIA H200 NVL datasheet, BF16 tensor 1,671 TFLOPS with sparsity"),
    (r"H200", 989.0, "NVIDIA H200 SXM datasheet, BF16 tensor 1,979 TFLOPS with sparsity"),
    (r"H100 NVL", 835.0, "NVIDIA H100 NVL datasheet, BF16 tensor 1,671 TFLOPS with sparsity"),
    (r"H100 PCIe", 756.0, "NVIDIA H100 PCIe datasheet, BF16 tensor 1,513 TFLOPS with sparsity"),
    (r"H100", 989.0, "NVIDIA H100 SXM datasheet, BF16 tensor 1,979 TFLOPS with sparsity"),
    (r"A100", 312.0, "NVIDIA A100 datasheet, BF16 tensor 312 TFLOPS dense (624 with sparsity)"),
    (r"L40S", 362.0, "NVIDIA L40S datasheet, BF16 tensor 733 TFLOPS with sparsity"),
    (r"\bL4\b", 121.0, "NVIDIA L4 datasheet, BF16 tensor 242 TFLOPS with sparsity"),
    (r"\bT4\b", 65.0, "NVIDIA T4 datasheet, FP16 mixed-precision tensor 65 TFLOPS (no BF16)"),
)
FLOPS_FORMULA = ("MFU = tokens/s x (6 N + 12 L H S) / peak FLOP/s; N = base parameters (embeddings included), "
                 "L layers, H hidden size, S sequence length: 6N for forward + backward (PaLM, appendix B; "
                 "recomputation under gradient checkpointing is not counted, and a frozen base skips the "
                 "weight gradients 6N counts, so LoRA's hardware work is nearer 4N), 12LHS for attention")


def flops_per_token(n_params: int, layers: int, hidden: int, seq: int) -> float:
    """Model FLOPs per trained token: 6N (forward 2N, backward 4N) plus 12*L*H*S for attention scores."""
    return 6.0 * n_params + 12.0 * layers * hidden * seq


def spec_sheet(device_name: str) -> tuple[float, str] | None:
    """(dense 16-bit peak TFLOP/s, source) for a CUDA device name, or None when no sheet is known."""
    for pattern, tflops, source in SPEC_SHEETS:
        if re.search(pattern, device_name, flags=re.IGNORECASE):
            return tflops, source
    return None


def mfu(tokens_per_s: float, per_token_flops: float, peak_tflops: float) -> float:
    """Achieved model FLOP/s over the peak (a fraction, 0..1)."""
    return tokens_per_s * per_token_flops / (peak_tflops * 1e12)


def model_config(shape: str, layers: int | None = None) -> dict:
    """The LlamaConfig fields of a shape (``layers`` overrides the block count, e.g. a quick 8-layer 8B)."""
    cfg = {**SHAPES[shape], "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    if layers:
        cfg["num_hidden_layers"] = layers
    return cfg


def mismatched_config(saved: dict, wanted: dict) -> str:
    """The shape fields where a saved config.json differs from the one asked for ('' when none do)."""
    keys = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "vocab_size")
    return ", ".join(f"{k} {saved.get(k)} != {wanted[k]}" for k in keys if saved.get(k) != wanted[k])


def planner_setup(path: str, cuda: bool, dtype: str, args: argparse.Namespace) -> tuple[str, dict]:
    """(stack, TrainingSetup fields) the planner models for one path, as it ran."""
    loralab_gpu = path.startswith("loralab") and cuda  # Unsloth's kernels; its CPU backend is stock HF
    stack = "unsloth" if loralab_gpu else "hf"
    if not args.gradient_checkpointing:
        checkpointing = "none"
    else:
        checkpointing = "offload" if loralab_gpu else "standard"
    fields = {"method": "qlora" if path.endswith("qlora") else "lora", "batch": args.batch, "seq": args.seq,
              "r": args.r, "compute_dtype": dtype, "gradient_checkpointing": checkpointing}
    if not cuda:
        fields["runtime_overhead_gb"] = 0.0  # no CUDA context on a CPU
    return stack, fields


def planner_estimate(model_dir: str, path: str, cuda: bool, dtype: str, args: argparse.Namespace) -> dict:
    """The planner's peak for this path's setting (torch-free), with the setup it assumed."""
    from loralab.plan.architectures import get_architecture
    from loralab.plan.memory import estimate_memory, setup_for

    stack, fields = planner_setup(path, cuda, dtype, args)
    est = estimate_memory(get_architecture(model_dir), setup_for(stack, **fields))
    return {"planner_gb": est.total_gb, "planner_stack": stack, "planner_setup": fields,
            "planner_peak_phase": est.peak_phase}


# ----------------------------------------------------------------------------------------------------
# Workers: each runs in a fresh subprocess and prints one RESULT line.


def _vm_hwm_bytes() -> int:
    """Peak resident set size of this process (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_rss_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False where the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def build_worker(args: argparse.Namespace) -> dict:
    """Build the random-weight model and a word-level tokenizer over its vocabulary; save both."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    started = time.time()
    cfg = LlamaConfig(**model_config(args.shape, args.layers))
    torch.manual_seed(3407)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # how checkpoints ship; each path loads in its own dtype
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(default)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(args.model_dir, safe_serialization=True)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    specials = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3, as pad/bos/eos in model_config
    vocab = {**{s: i for i, s in enumerate(specials)},
             **{f"t{i}": i for i in range(len(specials), cfg.vocab_size)}}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="<pad>", bos_token="<s>",
                                        eos_token="</s>", unk_token="<unk>",
                                        model_max_length=cfg.max_position_embeddings)
    tokenizer.save_pretrained(args.model_dir)
    return {"params": n_params, "seconds": time.time() - started, "device": device}


def _needs(path: str) -> list[str]:
    """Modules a path imports, in import order (unsloth before the stack: it patches transformers, PEFT and TRL)."""
    needs = ["pydantic", "unsloth", "trl", "datasets"] if path.startswith("loralab") else ["pydantic"]
    needs += ["torch", "transformers", "peft", "accelerate"]
    if path.endswith("qlora"):
        needs.append("bitsandbytes")
    return needs


def _missing(path: str) -> str | None:
    """Why a path cannot run here (the first module that does not import), or None."""
    import importlib

    for module in _needs(path):
        try:
            importlib.import_module(module)
        except Exception as error:  # noqa: BLE001  (any import failure skips the path, e.g. unsloth's RuntimeError)
            return f"{module} does not import ({type(error).__name__}: {str(error).splitlines()[0][:200]})"
    return None


def _random_rows(n_rows: int, seq: int, vocab: int) -> list[list[int]]:
    import torch

    generator = torch.Generator().manual_seed(3407)
    return torch.randint(4, vocab, (n_rows, seq), generator=generator).tolist()  # no special tokens


def _loralab_trainer(path: str, args: argparse.Namespace, rows: list[list[int]]):
    """loralab's own path: validated config -> load_model -> attach_lora -> build_trainer."""
    from datasets import Dataset

    from loralab.model.loading import attach_lora, load_model
    from loralab.params.run_config import validate_params
    from loralab.train.trainer import build_trainer

    cfg = validate_params({
        "model_name": args.model_dir, "load_in_4bit": path.endswith("qlora"), "max_seq_length": args.seq,
        "lora_r": args.r, "lora_alpha": 2 * args.r, "lora_dropout": 0.0,
        "use_gradient_checkpointing": args.gradient_checkpointing, "max_steps": args.warmup + args.steps,
        "per_device_train_batch_size": args.batch, "learning_rate": 2e-4, "warmup_steps": 0, "seed": 3407,
        "logging_steps": 1, "optim": "adamw_torch", "save_steps": 0, "eval_dataset": "", "eval_scorers": [],
    })
    model, tokenizer = load_model(cfg)
    model = attach_lora(model, cfg)
    trainer = build_trainer(model, tokenizer, Dataset.from_dict({"input_ids": rows}), cfg, args.work_dir)
    return trainer, "loralab build_trainer (TRL SFTTrainer under Unsloth)"


def training_args(args: argparse.Namespace, cuda: bool, dtype) -> dict:
    """The TrainingArguments the plain path gives transformers' Trainer or TRL's SFTConfig (loralab's own
    path takes the same settings through its RunConfig)."""
    import torch

    bf16 = dtype == torch.bfloat16
    return {
        "output_dir": args.work_dir, "per_device_train_batch_size": args.batch,
        "max_steps": args.warmup + args.steps, "learning_rate": 2e-4, "warmup_steps": 0, "optim": "adamw_torch",
        "seed": 3407, "data_seed": 3407, "logging_steps": 1, "save_strategy": "no", "report_to": "none",
        "disable_tqdm": True, "bf16": bf16, "fp16": dtype == torch.float16, "use_cpu": not cuda,
        "gradient_checkpointing": args.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},  # no input grads needed on a frozen base
    }


def _hf_trainer(path: str, args: argparse.Namespace, rows: list[list[int]], cuda: bool, dtype):
    """transformers + (bitsandbytes NF4) + PEFT, trained by TRL's SFTTrainer where it can run."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    quant = None
    if path.endswith("qlora"):
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype, quantization_config=quant,
                                                 device_map="cuda" if cuda else "cpu")
    for module in model.modules():  # the AVX512-BF16 repacking pitfall (DESIGN.md)
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    torch.manual_seed(3407)
    model = get_peft_model(model, LoraConfig(r=args.r, lora_alpha=2 * args.r, lora_dropout=0.0,
                                             target_modules=TARGETS, task_type="CAUSAL_LM"))
    common = training_args(args, cuda, dtype)
    why = "CPU: TRL's fused LM head has no CPU kernel"
    if cuda:
        try:
            from datasets import Dataset
            from trl import SFTConfig, SFTTrainer
        except Exception as error:  # noqa: BLE001  (TRL or datasets missing: transformers' Trainer trains)
            why = f"TRL not importable: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        else:
            sft = SFTConfig(**common, max_length=args.seq, dataset_num_proc=1)
            trainer = SFTTrainer(model=model, args=sft, train_dataset=Dataset.from_dict({"input_ids": rows}),
                                 processing_class=tokenizer)
            return trainer, "TRL SFTTrainer + PEFT"
    from transformers import Trainer, TrainingArguments

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict:
            ids = torch.tensor(rows[i])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    trainer = Trainer(model=model, args=TrainingArguments(**common), train_dataset=Rows())
    return trainer, f"transformers Trainer + PEFT ({why})"


def path_worker(path: str, args: argparse.Namespace) -> dict:
    """Train one path in this process and measure it (or say why it is skipped)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("LORALAB_PROGRESS", "none")
    started = time.time()
    reason = _missing(path)
    if reason:
        return {"path": path, "status": "skipped", "reason": reason}
    import torch
    from transformers import TrainerCallback

    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else (torch.float16 if cuda else torch.float32)
    rows = _random_rows(args.batch * (args.warmup + args.steps), args.seq, model_config(args.shape)["vocab_size"])
    rss_before = _vm_hwm_bytes()
    if path.startswith("loralab"):
        trainer, trainer_name = _loralab_trainer(path, args, rows)
    else:
        trainer, trainer_name = _hf_trainer(path, args, rows, cuda, dtype)
    model = trainer.model
    compute = next((p.dtype for n, p in model.named_parameters() if "embed_tokens" in n), dtype)
    from loralab.model.loading import count_parameters  # 4-bit weights counted as the elements they stand for

    trainable, total = count_parameters(model)

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_step_end(self, *a, **k) -> None:
            if cuda:
                torch.cuda.synchronize()
            self.ends.append(time.time())

    clock = StepClock()
    trainer.add_callback(clock)
    batch_tokens: list[int] = []
    collate = trainer.data_collator

    def counting_collator(features):
        batch = collate(features)
        mask = batch.get("attention_mask")
        batch_tokens.append(int(mask.sum()) if mask is not None else int(batch["input_ids"].numel()))
        return batch

    trainer.data_collator = counting_collator
    if cuda:
        load_peak = torch.cuda.max_memory_allocated()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        reset = True
    else:
        load_peak = _vm_hwm_bytes()
        reset = _reset_rss_peak()
    trainer.train()
    if cuda:
        peak, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    else:
        peak, reserved = _vm_hwm_bytes(), None
    ends = clock.ends
    if len(ends) < args.warmup + args.steps:
        raise RuntimeError(f"only {len(ends)} of {args.warmup + args.steps} steps ran")
    counted = len(batch_tokens) >= args.warmup + args.steps  # a trainer that swaps the collator counts nothing
    timed_tokens = (sum(batch_tokens[args.warmup:args.warmup + args.steps]) if counted
                    else args.steps * args.batch * args.seq)
    timed_seconds = ends[args.warmup + args.steps - 1] - ends[args.warmup - 1]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "path": path, "status": "ok", "trainer": trainer_name, "dtype": str(compute).removeprefix("torch."),
        "tokens_per_s": timed_tokens / timed_seconds, "step_s": timed_seconds / args.steps,
        "timed_tokens": timed_tokens, "tokens_counted": counted, "peak_gb": peak / 1e9, "peak_kind": "cuda max_memory_allocated"
        if cuda else ("peak RSS (VmHWM) during training" if reset else "peak RSS (VmHWM) of the whole process"),
        "reserved_gb": reserved / 1e9 if reserved is not None else None, "load_peak_gb": load_peak / 1e9,
        "rss_before_load_gb": rss_before / 1e9 if not cuda else None, "first_loss": losses[0] if losses else None,
        "trainable_params": trainable, "total_params": total, "cuda": cuda,
        "device": torch.cuda.get_device_name() if cuda else f"cpu, {args.threads} threads",
        "seconds": time.time() - started,
    }


# ----------------------------------------------------------------------------------------------------
# The driver: build once, run each path in a fresh process, add the planner and MFU, print, save.


def _worker_cmd(role: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", role, "--shape", args.shape, "--model-dir", args.model_dir,
           "--work-dir", args.work_dir, "-b", str(args.batch), "-s", str(args.seq), "--steps",
           str(args.steps), "--warmup", str(args.warmup), "-r", str(args.r), "--threads", str(args.threads)]
    if args.layers:
        cmd += ["--layers", str(args.layers)]
    if not args.gradient_checkpointing:
        cmd.append("--no-gradient-checkpointing")
    return cmd


def run_worker(role: str, args: argparse.Namespace) -> dict:
    """Run a worker subprocess; its RESULT line, or a failure with the end of its output."""
    try:
        proc = subprocess.run(_worker_cmd(role, args), capture_output=True, text=True, check=False,
                              timeout=args.timeout)
    except subprocess.TimeoutExpired as error:
        tail = error.stderr or ""
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return {"path": role, "status": "failed", "reason": f"timed out after {args.timeout:g} s", "log": tail[-3000:]}
    line = next((x for x in proc.stdout.splitlines() if x.startswith(RESULT)), None)
    if line is None:
        log = (proc.stdout[-1000:] + "\n" + proc.stderr[-3000:]).strip()
        last = next((x for x in reversed(proc.stderr.strip().splitlines()) if x.strip()), "")
        return {"path": role, "status": "failed", "reason": f"exit {proc.returncode}: {last[:300]}", "log": log}
    return json.loads(line.removeprefix(RESULT))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def measured_for_plan(r: dict) -> float:
    """The measured bytes (GB) the planner's estimate stands for: the CUDA peak, or on a CPU the peak RSS above
    the RSS before loading (the process's own libraries are no term of the planner's)."""
    if r["cuda"] or r.get("rss_before_load_gb") is None:
        return r["peak_gb"]
    return r["peak_gb"] - r["rss_before_load_gb"]


def print_table(report: dict) -> None:
    """The per-path table, then the formulas and sources behind its columns."""
    s = report["settings"]
    print(f"\n{report['shape']} ({_params(report['base_params'])} params, {s['layers']} layers), batch {s['batch']} "
          f"x seq {s['seq']}, r={s['r']} all-linear, {s['steps']} timed steps after {s['warmup']} warm-up, "
          f"gradient checkpointing {'on' if s['gradient_checkpointing'] else 'off'}; {report['device']}")
    print(f"{'path':15s} {'dtype':9s} {'tok/s':>10s} {'step s':>8s} {'peak GB':>8s} {'plan GB':>8s} "
          f"{'plan/peak':>9s} {'MFU':>7s} {'1st loss':>8s}  trainer")
    for name, r in report["paths"].items():
        if r["status"] != "ok":
            print(f"{name:15s} {r['status']}: {r['reason']}")
            continue
        shown_mfu = f"{100 * r['mfu']:6.1f}%" if r.get("mfu") is not None else f"{'n/a':>7s}"
        print(f"{name:15s} {r['dtype']:9s} {r['tokens_per_s']:10.1f} {r['step_s']:8.3f} {r['peak_gb']:8.3f} "
              f"{r['planner_gb']:8.3f} {_fmt(r.get('plan_over_peak'), '9.2f'):>9s} {shown_mfu} "
              f"{_fmt(r['first_loss'], '8.3f'):>8s}  {r['trainer']}")
    cpu_note = ("; plan/peak on a CPU: over the peak RSS above the RSS before loading (the libraries)"
                if not report["cuda"] else "")
    print(f"peak: {report['peak_kind']}; plan: loralab.plan.memory.estimate_memory for the same setting "
          f"(stack 'unsloth' for loralab on CUDA, 'hf' otherwise){cpu_note}")
    print(FLOPS_FORMULA + f"; {report['flops_per_token'] / 1e9:.4g} GFLOP/token here")
    peak = report["peak_tflops"]
    print(f"peak FLOP/s: {peak:g} TFLOP/s ({report['peak_source']})" if peak else f"MFU: {report['peak_source']}")


def make_report(args: argparse.Namespace, arch, per_token: float, results: dict[str, dict]) -> dict:
    """The report of the paths run so far: settings, device, spec sheet, MFU per measured path."""
    device = next((r["device"] for r in results.values() if r["status"] == "ok"), "no path ran")
    cuda = any(r.get("cuda") for r in results.values())
    sheet = (args.peak_tflops, "--peak-tflops") if args.peak_tflops else (spec_sheet(device) if cuda else None)
    for r in results.values():
        if r["status"] == "ok":
            r["mfu"] = mfu(r["tokens_per_s"], per_token, sheet[0]) if sheet else None
    peak_kind = next((r["peak_kind"] for r in results.values() if r["status"] == "ok"), "-")
    report = {
        "shape": args.shape, "device": device, "base_params": arch.param_count(),
        "settings": {"batch": args.batch, "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
                     "r": args.r, "alpha": 2 * args.r, "layers": arch.layers, "targets": "all-linear",
                     "gradient_checkpointing": args.gradient_checkpointing, "threads": args.threads},
        "flops_per_token": per_token, "flops_formula": FLOPS_FORMULA,
        "peak_tflops": sheet[0] if sheet else None,
        "peak_source": sheet[1] if sheet else ("n/a (no spec sheet for CPU)" if not cuda
                                               else f"n/a (no spec sheet for {device}; pass --peak-tflops)"),
        "peak_kind": peak_kind, "cuda": cuda, "paths": results,
    }
    return report


def exit_code(results: dict[str, dict]) -> int:
    """0 when every path asked for ran; 1 when one failed or was skipped (saying which)."""
    not_run = {name: r for name, r in results.items() if r["status"] != "ok"}
    for name, r in not_run.items():
        print(f"{name} {r['status']}: {r['reason']}")
    return 1 if not_run else 0


def run(args: argparse.Namespace) -> int:
    """Build the model, run every path asked for, print the table and write --out; 1 unless every path ran."""
    from loralab.plan.architectures import get_architecture

    own_dir = args.model_dir is None
    args.model_dir = args.model_dir or tempfile.mkdtemp(prefix="loralab-gpu-check-model-")
    args.work_dir = tempfile.mkdtemp(prefix="loralab-gpu-check-out-")
    try:
        saved = Path(args.model_dir) / "config.json"
        if saved.is_file():
            wrong = mismatched_config(json.loads(saved.read_text()), model_config(args.shape, args.layers))
            if wrong:
                print(f"{args.model_dir} holds another model ({wrong}): remove it or pick another --model-dir")
                return 2
        else:
            built = run_worker("build", args)
            if built.get("status") == "failed":
                print(f"building the model failed: {built['reason']}\n{built.get('log', '')}")
                return 1
            print(f"built a random-weight {args.shape} model ({_params(built['params'])} params) on "
                  f"{built['device']} in {built['seconds']:.0f} s: {args.model_dir}", flush=True)
        arch = get_architecture(args.model_dir)
        per_token = flops_per_token(arch.param_count(), arch.layers, arch.hidden, args.seq)
        results: dict[str, dict] = {}
        for name in args.paths:
            r = run_worker(name, args)
            if r["status"] == "ok":
                dtype = PLANNER_DTYPES.get(r["dtype"], "bf16")
                r.update(planner_estimate(args.model_dir, name, r["cuda"], dtype, args))
                measured = measured_for_plan(r)
                r["plan_over_peak"] = r["planner_gb"] / measured if measured > 0 else None
            results[name] = r
            said = (f"{r['tokens_per_s']:.1f} tok/s, peak {r['peak_gb']:.3f} GB, plan {r['planner_gb']:.3f} GB"
                    if r["status"] == "ok" else f"{r['status']}: {r['reason']}")
            print(f"{name}: {said}", flush=True)
            if args.out:  # after every path: a run cut short still leaves what it measured
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(make_report(args, arch, per_token, results), indent=2))
        report = make_report(args, arch, per_token, results)
        print_table(report)
        for name, r in results.items():
            if r["status"] == "failed":
                print(f"\n--- {name} failed; the end of its output:\n{r.get('log', '')[-2500:]}")
        return exit_code(results)
    finally:
        shutil.rmtree(args.work_dir, ignore_errors=True)
        if own_dir and not args.keep_model:
            shutil.rmtree(args.model_dir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.1-8b")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS))
    parser.add_argument("--per-device-train-batch-size", "-b", dest="batch", type=int,
                        help="sequences per step (8B: 4, tiny: 2)")
    parser.add_argument("--max-seq-length", "-s", dest="seq", type=int, help="tokens per sequence (8B: 2048, tiny: 64)")
    parser.add_argument("--steps", type=int, help="timed steps (8B: 5, tiny: 3)")
    parser.add_argument("--warmup", type=int, help="untimed steps first, at least 1 (8B: 2, tiny: 1)")
    parser.add_argument("--lora-r", "-r", dest="r", type=int, default=16,
                        help="LoRA rank (lora_alpha = 2 * lora_r), all linear layers")
    parser.add_argument("--layers", type=int, help="override the shape's block count (fewer: a quicker check)")
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    parser.add_argument("--threads", type=int, help="CPU threads, CPU runs only (8B: all cores, tiny: 1)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak 16-bit TFLOP/s, if not in the table")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per path before it counts as failed")
    parser.add_argument("--model-dir", help="build into (or reuse) this folder, kept, instead of a temporary one")
    parser.add_argument("--keep-model", action="store_true", help="keep the temporary model folder")
    parser.add_argument("--out", help="write the report as JSON here")
    parser.add_argument("--work-dir", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    from loralab.plan.cli import renamed_flag  # an old option name: refused, naming the new one

    old = renamed_flag(sys.argv[1:] if argv is None else argv, ("--per-device-train-batch-size", "--max-seq-length",
                                                                "--lora-r"))
    if old:
        parser.error(old)
    args = parser.parse_args(argv)
    for key, value in RUN_DEFAULTS[args.shape].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    flags = {"batch": "--per-device-train-batch-size", "seq": "--max-seq-length", "r": "--lora-r"}
    for key in ("batch", "seq", "steps", "warmup", "r", "threads"):
        if getattr(args, key) < 1:
            parser.error(f"{flags.get(key, '--' + key)} must be at least 1, got {getattr(args, key)}")
    if isinstance(args.paths, str):
        args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
        unknown = sorted(set(args.paths) - set(PATHS))
        if unknown or not args.paths:
            parser.error(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker == "build":
        print(RESULT + json.dumps(build_worker(args)), flush=True)
        return 0
    if args.worker:
        print(RESULT + json.dumps(path_worker(args.worker, args)), flush=True)
        return 0
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
