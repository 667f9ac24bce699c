"""``loralab plan``: will full fine-tuning / LoRA / QLoRA fit on this GPU? (No torch import: instant.)

    loralab plan meta-llama/Llama-3.1-8B --gpu-gb 16 --max-seq-length 2048 --per-device-train-batch-size 2 --lora-r 16
    loralab plan meta-llama/Llama-3.1-8B --gpu-gb 16 -s 2048 -b 2 -r 16     # the same with the short aliases
    loralab plan Qwen/Qwen2.5-7B --gpu-gb 24 --target-modules attention --json
    loralab plan llama-3.1-70b --gpu-gb 40 --gpus 2 --strategy fsdp    # per GPU, fully sharded
    loralab plan Qwen/Qwen2.5-1.5B-Instruct --gpu-gb 15 --objective grpo -b 2 --generations 8 \
        -s 256 --completion-length 512 --vllm                            # GRPO: prompts x completions

The options that are notebook parameters are named as the parameters are (``--lora-r`` is ``lora_r``), each
with a short alias; an older name is refused with the new one (``RENAMED_FLAGS``).
From a notebook, call :func:`loralab.plan.planner.plan` instead; this module only parses and prints.
"""

from __future__ import annotations

import argparse
import json
import math

from loralab.plan.memory import GIB, STACKS
from loralab.plan.planner import Plan, plan

_METHOD_NAMES = {"full": "full fine-tuning", "lora": "16-bit LoRA", "qlora": "QLoRA (4-bit base)"}
_COMM = {  # what "comm MB/step" counts, per strategy (loralab.plan.devices)
    "ddp": "comm MB/step: what each GPU sends (and receives) per step: a ring all-reduce of the trainable "
    "gradients, 2 (G-1)/G x their bytes.",
    "fsdp": "comm MB/step: what each GPU sends (and receives) per step: (G-1)/G x (every block all-gathered in "
    "forward and in backward + the embeddings/lm_head once + the gradients reduce-scattered).",
}


# Old long options -> their names now (notebook 01's parameter names with dashes), and each one's short alias.
RENAMED_FLAGS = {"--batch": "--per-device-train-batch-size", "--seq": "--max-seq-length", "--r": "--lora-r",
                 "--alpha": "--lora-alpha", "--targets": "--target-modules"}
SHORT_FLAGS = {"--per-device-train-batch-size": "-b", "--max-seq-length": "-s", "--lora-r": "-r",
               "--lora-alpha": "-a", "--target-modules": "-t"}


def renamed_flag(argv: list[str], options: tuple[str, ...] = tuple(SHORT_FLAGS)) -> str | None:
    """The sentence for the first old option in ``argv`` (``OLD is now NEW (short: -x)``) whose new name is one of
    ``options`` (a script with some of them: bench/), or None."""
    for arg in argv:
        old = arg.split("=", 1)[0]
        if RENAMED_FLAGS.get(old) in options:
            new = RENAMED_FLAGS[old]
            return f"{old} is now {new} (short: {SHORT_FLAGS[new]})"
    return None


class UsageError(ValueError):
    """A command-line mistake; ``loralab.cli`` prints it as one ``error:`` line and returns 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and calling ``sys.exit``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message.removeprefix("argument "))  # "--lora-r/-r: must be ..." names the option first


def _finite_number(option: str, example: str, what: str, zero_ok: bool = False):
    """argparse ``type=``: a finite number > 0 (>= 0 with ``zero_ok``); refuses nan, inf, negatives and words."""
    kind = "number >= 0" if zero_ok else "positive number"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(
                f"must be a finite {kind} {what}, e.g. {option} {example} (got {text!r})"
            )
        return value

    return parse


def _whole_number(option: str, example: str, what: str):
    """argparse ``type=``: a whole number >= 1 (``2048`` or ``2048.0``; not ``1.5``, ``0``, ``nan``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            value = int(number) if math.isfinite(number) and number.is_integer() else 0
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"must be a whole number >= 1 ({what}), e.g. {option} {example} (got {text!r})"
            )
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="loralab plan",
        description=(
            "Estimate training memory for full fine-tuning, 16-bit LoRA and QLoRA from a model's config, "
            "and say which one to use on a GPU of the given size."
        ),
        epilog="The options named like notebook 01's parameters (--per-device-train-batch-size is "
        "per_device_train_batch_size) have short aliases: -b, -s, -r, -a, -t.",
    )
    p.add_argument(
        "model", help="hub id, Unsloth name, short name (llama-3.1-8b) or a folder with config.json"
    )
    p.add_argument(
        "--gpu-gb",
        type=_finite_number("--gpu-gb", "16", "of GiB (the GPU's memory)"),
        required=True,
        help="GPU memory in GiB, e.g. 16 (T4), 24 (4090), 80 (H100)",
    )
    p.add_argument(
        "--gpus",
        type=_whole_number("--gpus", "2", "GPUs training together"),
        default=1,
        help="GPUs training together (default 1); every memory number is per GPU, -b is per GPU",
    )
    p.add_argument(
        "--strategy",
        choices=("ddp", "fsdp"),
        default="ddp",
        help="ddp (default): a full copy per GPU; fsdp: weights, gradients and optimizer states sharded",
    )
    p.add_argument(
        "--max-seq-length", "-s",
        type=_whole_number("--max-seq-length", "2048", "tokens per sequence"),
        default=2048,
        metavar="N",
        help="tokens per sequence (default 2048; GRPO: per prompt, --completion-length adds the generated ones)",
    )
    p.add_argument(
        "--per-device-train-batch-size", "-b",
        type=_whole_number("--per-device-train-batch-size", "2", "sequences per step on each GPU"),
        default=2,
        metavar="N",
        help="sequences per step on each GPU (default 2; DPO: pairs; GRPO: prompts, each sampled --generations "
        "times)",
    )
    p.add_argument(
        "--lora-r", "-r", type=_whole_number("--lora-r", "16", "the LoRA rank"), default=16, metavar="N",
        help="LoRA rank (default 16)",
    )
    p.add_argument(
        "--lora-alpha", "-a",
        type=_finite_number("--lora-alpha", "32", "(LoRA alpha; the convention is 2 * lora_r)"),
        default=None,
        metavar="X",
        help="LoRA alpha (default 2 * lora_r)",
    )
    p.add_argument("--target-modules", "-t", choices=("all-linear", "attention"), default="all-linear",
                   help="all-linear (default) or attention")
    p.add_argument("--dora", action="store_true",
                   help="DoRA adapters: one magnitude per output row more per layer, and DoRA's extra activations")
    p.add_argument("--no-gradient-checkpointing", action="store_true", help="keep every block's activations")
    p.add_argument(
        "--stack",
        choices=sorted(STACKS),
        default="unsloth",
        help="training code path the estimate models (default unsloth)",
    )
    p.add_argument(
        "--objective",
        choices=("sft", "dpo", "grpo"),
        default="sft",
        help="sft (default); dpo: preference pairs, a reference adapter and reference pass; grpo: sampled "
        "completions, generation's KV cache, a reference pass when --beta > 0",
    )
    grpo = p.add_argument_group("GRPO (with --objective grpo; -b counts prompts, -s a prompt's tokens)")
    for option, parse, what in (
        ("--generations", _whole_number("--generations", "8", "completions per prompt"),
         "completions sampled per prompt, num_generations (default 8)"),
        ("--completion-length", _whole_number("--completion-length", "256", "tokens generated per completion"),
         "tokens generated per completion, max_completion_length (default 256)"),
        ("--beta", _finite_number("--beta", "0.04", "(GRPO's KL penalty)", zero_ok=True),
         "KL penalty; > 0 adds a reference pass (default 0)"),
    ):
        grpo.add_argument(option, type=parse, default=None, help=what)
    grpo.add_argument("--vllm", action="store_true",
                      help="generate with vLLM (Unsloth's fast_inference), which reserves half the GPU")
    p.add_argument(
        "--full-ft-justified",
        action="store_true",
        help="your evals show LoRA falls short: allow full fine-tuning as the decision",
    )
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    return p


def render(result: Plan) -> None:
    """Print the plan as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    several = result.gpus > 1
    where = (
        f"{result.gpus} x {result.gpu_gb:g} GiB GPUs, strategy={result.strategy}, per GPU"
        if several
        else f"a {result.gpu_gb:g} GiB GPU"
        + (", strategy=fsdp (one device: nothing to shard)" if result.strategy == "fsdp" else "")
    )
    console.print(
        f"[bold]{result.model}[/] on {where}: batch {result.batch} x seq "
        f"{result.seq}, r={result.r}, alpha={result.alpha:g}, targets={result.targets}, stack={result.stack}"
        + (", DoRA" if result.dora else "")
        + (
            f", GRPO: {result.batch} prompts x {result.grpo['generations']} completions of "
            f"{result.grpo['completion']} tokens, beta {result.grpo['beta']:g}, "
            + ("vLLM" if result.grpo["vllm"] else "plain generation")
            if result.grpo
            else ""
        )
    )
    console.print(_summary(result))
    shown = result.decision if result.decision != "none" else "qlora"
    est = result.fits[shown].estimate
    console.print(est.margin[0].upper() + est.margin[1:] + ".")
    breakdown = Table(title=f"Where the memory goes: {_METHOD_NAMES[shown]}")
    breakdown.add_column("term")
    breakdown.add_column("GiB", justify="right")
    breakdown.add_column("how")
    for name, gb, how in est.rows():
        breakdown.add_row(name, f"{gb * 1e9 / GIB:.2f}", how)
    console.print(breakdown)
    console.print(
        "[dim][A] = end of forward (logits), [B] = inside backward, [R] = the reference pass, "
        "[G] = generation; "
        "the peak takes the largest. "
        f"Tutorial rule (params x bits/8 x 1.2): {est.tutorial_gb:.1f} GB.[/]"
    )
    if result.gpus > 1:
        console.print(f"[dim]{_COMM[result.strategy]}[/]")
    for note in est.notes:
        console.print(f"[dim]{note}[/]")
    console.print(
        f"\n[bold]Decision: {_METHOD_NAMES.get(result.decision, 'nothing fits')}[/]. {result.reason}"
    )
    for a in result.advice:
        colour = "yellow" if a.level == "warning" else "cyan"
        console.print(f"[{colour}]{a.level}[/] ({a.topic}): {a.message}")


def _summary(result: Plan):
    """The 'Does it fit?' table; with several GPUs, per GPU and with the traffic per step."""
    from rich.table import Table

    several = result.gpus > 1
    title = (
        f"Does it fit? (per GPU, {result.gpus} x {result.strategy.upper()})" if several else "Does it fit?"
    )
    summary = Table(title=title)
    columns = [
        "method",
        "peak GiB/GPU" if several else "peak GiB",
        "fits",
        "free GiB",
        f"max batch @ seq {result.seq}",
        f"max seq @ batch {result.batch}",
    ] + (["comm MB/step"] if several else [])
    for col in columns:
        summary.add_column(col, justify="left" if col in ("method", "fits") else "right")
    for m, f in result.fits.items():
        summary.add_row(
            _METHOD_NAMES[m],
            f"{f.estimate.total_gib:.1f}",
            "[green]yes[/]" if f.fits else "[red]no[/]",
            f"{f.free_gib:.1f}",
            str(f.max_batch),
            f"{f.max_seq:,}",
            *([f"{f.comm_mb:,.0f}"] if several else []),
        )
    return summary


def main(argv: list[str]) -> int:
    """Run ``loralab plan``. A user mistake (bad option, unknown model, unreadable config.json) raises
    ValueError (:class:`UsageError` for options), which ``loralab.cli`` prints as one ``error: ...`` line
    with exit code 2."""
    old = renamed_flag(argv)
    if old:
        raise UsageError(old)
    args = build_parser().parse_args(argv)
    grpo_options = {"--generations": args.generations, "--completion-length": args.completion_length,
                    "--beta": args.beta, "--vllm": args.vllm or None}
    given = [name for name, value in grpo_options.items() if value is not None]
    if given and args.objective != "grpo":
        raise UsageError(f"{', '.join(given)}: GRPO's options; add --objective grpo")
    result = plan(
        args.model,
        gpu_gb=args.gpu_gb,
        batch=args.per_device_train_batch_size,
        seq=args.max_seq_length,
        r=args.lora_r,
        targets=args.target_modules,
        alpha=args.lora_alpha,
        gradient_checkpointing=not args.no_gradient_checkpointing,
        stack=args.stack,
        lora_falls_short=args.full_ft_justified,
        objective=args.objective,
        gpus=args.gpus,
        strategy=args.strategy,
        dora=args.dora,
        generations=8 if args.generations is None else args.generations,
        completion=256 if args.completion_length is None else args.completion_length,
        beta=args.beta or 0.0,
        vllm=args.vllm,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        render(result)
    return 0
