"""Training on several devices or machines: the training step under torchrun, the rest of the notebook as it is.

    from loralab.train.workers import train_in_workers
    if cfg.world_size > 1:                                # notebook 01's train cell
        train_result = train_in_workers(trainer, cfg, checkpoint, run_dir)
    else:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)

With ``num_processes`` > 1 (or ``num_nodes`` > 1) the notebook's process starts PyTorch's own
launcher, ``torchrun`` (``python -m torch.distributed.run``), with ``loralab.train.worker`` as the
program: ``num_processes`` workers on this machine, data parallel (DDP; the gloo backend on CPUs, where
each worker gets its share of the cores, NCCL on GPUs). The workers get the notebook's validated
params in a job file, so the notebook stays the one place a run is described. Rank 0 writes the
checkpoints into the run folder and leaves the trained adapter and the trainer's log in a scratch
folder; this process then loads them into its own model and trainer, and evaluation, saving and
``metrics.json`` go on as in a one-process run, once.

Why torchrun and not ``accelerate.notebook_launcher``: the launcher forks the notebook's process, which
needs CUDA untouched, and the notebook has loaded the model onto the GPU by then; torchrun starts
fresh processes, in a notebook and headless alike. While they train, the notebook's own model waits in host
memory (``model_off_the_gpu``), so the first GPU holds one copy of the model, the worker's.

Another machine joins with ``loralab run NOTEBOOK -f PARAMS --nnodes 2 --node-rank 1 --master-addr
HOST --master-port PORT`` (``join_as_node``): the same params, workers only, no run folder.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loralab.params.errors import ParamsError
from loralab.params.run_config import RunConfig
from loralab.train.progress import progress_mode, progress_print
from loralab.train.worker import RESULT_ADAPTER, RESULT_METRICS, RESULT_STATE

FAILED_RANK = re.compile(r"rank\s*:\s*(\d+)")  # torchrun's failure summary: "rank      : 1 (local_rank: 1)"
EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+)")


class TrainingWorkersFailed(RuntimeError):
    """A torchrun worker failed; the message names its rank and says how to resume."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (for a single machine's rendezvous)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    """ParamsError when ``port`` is taken on this machine (machine 0 must listen there)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("" if host not in ("127.0.0.1", "localhost") else host, port))
        except OSError:
            raise ParamsError(f"master_port: {port} is already in use on this machine: choose another port (or 0 "
                              "for a free one on a single machine).") from None


def torchrun_command(job_file: Path, cfg: RunConfig, node_rank: int, port: int) -> list[str]:
    """``python -m torch.distributed.run ... -m loralab.train.worker JOB`` for this machine."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.num_processes}",
            f"--nnodes={cfg.num_nodes}", f"--node-rank={node_rank}", f"--master-addr={cfg.master_addr}",
            f"--master-port={port}", "-m", "loralab.train.worker", str(job_file)]


def _relay(line: str) -> None:
    """Pass a worker's progress line on: into the cell in a watched notebook, else the cell and the terminal."""
    if "[loralab]" not in line:
        return
    text = line.split("[loralab]", 1)[1].strip()
    if progress_mode() == "notebook":
        print(text, flush=True)
    else:
        progress_print(text)


def _launch(command: list[str], what: str) -> None:
    """Run torchrun, passing its progress lines on; TrainingWorkersFailed naming the failed rank."""
    tail: deque[str] = deque(maxlen=400)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            tail.append(line)
            _relay(line)
    finally:
        code = process.wait()
    if code == 0:
        return
    text = "".join(tail)
    # torchrun's summary: "Root Cause (first observed failure)" names the worker that failed first; the
    # others listed under "Failures" are the ones torchrun stopped after it.
    first = text.rsplit("Root Cause", 1)[-1]
    ranks = sorted({int(r) for r in FAILED_RANK.findall(first)})
    exits = EXIT_CODE.findall(first)
    who = f"training worker rank {', '.join(map(str, ranks))}" if ranks else "a training worker"
    how = f" (exit code {exits[0]}{', killed' if exits and int(exits[0]) < 0 else ''})" if exits else ""
    print("".join(list(tail)[-80:]), file=sys.stderr)  # the workers' last words, for the traceback's reader
    raise TrainingWorkersFailed(f"{who} failed{how} during {what}. Complete checkpoints in the run folder are kept; run the "
                    "same command again to resume from the newest one.")


def _job(cfg: RunConfig, checkpoints: Path, checkpoint: Path | None, result_dir: Path | None) -> dict:
    return {"params": cfg.model_dump(), "checkpoints": str(checkpoints),
            "checkpoint": str(checkpoint) if checkpoint else None,
            "result_dir": str(result_dir) if result_dir else None}


@contextmanager
def model_off_the_gpu(model) -> Iterator[None]:
    """The notebook's model in host memory while the workers train, so GPU 0 holds the worker's copy only
    (two T4s of 15 GB each hold one model apiece, not two on the first); back on its GPU afterwards."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        yield
        return
    model.to("cpu")
    torch.cuda.empty_cache()
    try:
        yield
    finally:
        model.to(device)


def train_in_workers(trainer, cfg: RunConfig, checkpoint: Path | None, run_dir: Path):
    """Train under torchrun (this machine is node 0); load the result into ``trainer``; a TrainOutput."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers.trainer_callback import TrainerState
    from transformers.trainer_utils import TrainOutput

    port = cfg.master_port or free_port()
    if cfg.master_port:
        check_port_free(cfg.master_addr, port)
    progress_print(f"training with {cfg.world_size} processes ({cfg.num_processes} per machine x {cfg.num_nodes} "
                   f"machines), global batch {cfg.global_batch}")
    with tempfile.TemporaryDirectory(prefix="loralab-workers-") as scratch, model_off_the_gpu(trainer.model):
        scratch_dir = Path(scratch)
        job_file = scratch_dir / "job.json"
        job_file.write_text(json.dumps(_job(cfg, Path(run_dir) / "checkpoints", checkpoint, scratch_dir)))
        _launch(torchrun_command(job_file, cfg, node_rank=0, port=port), "training")
        adapter = load_file(str(scratch_dir / RESULT_ADAPTER / "adapter_model.safetensors"))
        outcome = set_peft_model_state_dict(trainer.model, adapter)
        if getattr(outcome, "unexpected_keys", None):
            raise TrainingWorkersFailed(f"the trained adapter does not fit this model: {outcome.unexpected_keys[:3]}")
        trainer.state = TrainerState.load_from_json(str(scratch_dir / RESULT_STATE))
        result = json.loads((scratch_dir / RESULT_METRICS).read_text())
    return TrainOutput(result["global_step"], result["training_loss"], result["metrics"])


def join_as_node(cfg: RunConfig, node_rank: int) -> None:
    """This machine's workers of a run that machine 0 leads (``loralab run ... --node-rank R``)."""
    if not 0 < node_rank < cfg.num_nodes:
        raise ParamsError(f"--node-rank {node_rank}: with num_nodes {cfg.num_nodes} the other machines are node "
                          f"1 to {cfg.num_nodes - 1} (node 0 runs the notebook).")
    with tempfile.TemporaryDirectory(prefix="loralab-node-") as scratch:
        job_file = Path(scratch) / "job.json"
        job_file.write_text(json.dumps(_job(cfg, Path(scratch) / "checkpoints", None, None)))
        progress_print(f"node {node_rank} of {cfg.num_nodes}: {cfg.num_processes} workers, meeting "
                       f"{cfg.master_addr}:{cfg.master_port}")
        _launch(torchrun_command(job_file, cfg, node_rank=node_rank, port=cfg.master_port), "training")
