"""Live training progress, fitted to where the run is: the trainer's notebook display, or plain lines.

    from loralab.train.progress import progress_mode, progress_callbacks
    progress_mode()          # "notebook" in Jupyter / Colab / Kaggle, "lines" under loralab run / papermill
    trainer = SFTTrainer(..., args=SFTConfig(disable_tqdm=progress_mode() != "notebook", ...),
                         callbacks=progress_callbacks())

* ``notebook``: an interactive notebook (Colab, a Kaggle interactive session, Jupyter, VS Code): the
  trainer's own progress display (step, loss, learning rate, eval loss, ETA).
* ``lines``: headless (``loralab run``, ``make run``, plain papermill): the trainer prints its own log lines
  into the cell (plain output), and the terminal that started the run gets one line per logging interval
  (``step 12/60 | loss 0.912 | 410 tokens/s | 00:31 elapsed, ETA 01:05``). A Jupyter kernel (ipykernel 6+)
  sends its own file descriptor 2 into the cell as standard error, a red block on a page; the terminal line
  goes to the kernel's copy of the original descriptor instead, so it reaches ``loralab run``'s terminal and
  not the notebook. Training in worker processes (``train_in_workers``) prints nothing into the cell itself:
  their lines go to the cell as plain output and to the terminal (``progress_print``).
* ``none``: no progress at all. ``LORALAB_PROGRESS=notebook|lines|none`` overrides the detection.

``loralab run`` also prints which notebook section is running (``loralab.runs.sections``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Literal

ProgressMode = Literal["notebook", "lines", "none"]
PROGRESS_ENV = "LORALAB_PROGRESS"
PROGRESS_FILE_ENV = "LORALAB_PROGRESS_FILE"
MODES = ("notebook", "lines", "none")
PREFIX = "[loralab]"


def _interactive_notebook() -> bool:
    """True in a notebook a person is watching: Colab, an interactive Kaggle session, Jupyter, VS Code."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return False  # a terminal IPython or plain python
    if "google.colab" in sys.modules or os.environ.get("KAGGLE_KERNEL_RUN_TYPE") == "Interactive":
        return True
    # Jupyter Server names the session of each kernel it starts; VS Code marks its kernels. papermill's
    # kernels (loralab run, make run, sweeps) have neither.
    return bool(os.environ.get("JPY_SESSION_NAME") or os.environ.get("VSCODE_PID"))


def progress_mode() -> ProgressMode:
    """How this process shows training progress (``LORALAB_PROGRESS`` first, then where it runs)."""
    chosen = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if chosen in MODES:
        return chosen  # type: ignore[return-value]
    return "notebook" if _interactive_notebook() else "lines"


def _in_kernel() -> bool:
    """True where ``sys.stdout`` is a Jupyter kernel's stream: what is written there becomes the cell's output."""
    return type(sys.stdout).__module__.startswith("ipykernel")


def _write_terminal(line: str) -> None:
    """``line`` on the standard error the process started with, past a kernel's capture of descriptor 2."""
    original = getattr(sys.stderr, "_original_stdstream_copy", None)  # ipykernel's copy of the real fd 2
    if isinstance(original, int):
        os.write(original, line.encode("utf-8", "replace"))
        return
    stream = sys.__stderr__
    if stream is not None:
        stream.write(line)
        stream.flush()


def terminal_line(text: str) -> None:
    """Write one line to the terminal that started the run (the process's own stderr, not a cell's).

    With ``LORALAB_PROGRESS_FILE`` set (``loralab sweep`` does, to show the current run's step in its
    progress bar) the line replaces that file's content instead.
    """
    try:
        target = os.environ.get(PROGRESS_FILE_ENV)
        if target:
            Path(target).write_text(text + "\n", encoding="utf-8")
            return
        _write_terminal(f"{PREFIX} {text}\n")
    except (OSError, ValueError):
        pass  # a closed or missing terminal must never stop a run


def progress_print(text: str) -> None:
    """A line for the cell (plain output, when running in a kernel) and the terminal: worker processes' progress."""
    if _in_kernel():
        try:
            print(f"{PREFIX} {text}", file=sys.stdout, flush=True)
        except (OSError, ValueError):
            pass
    terminal_line(text)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def progress_line(step: int, max_steps: int, logs: dict, elapsed_s: float, steps_done: int,
                  tokens_done: float | None) -> str:
    """``step 12/60 | loss 0.912 | 410 tokens/s | 00:31 elapsed, ETA 01:05`` from one log entry.

    ``steps_done`` and ``tokens_done`` count this process's work (a resumed run starts past 0), so the
    rate and the ETA are measured, not assumed.
    """
    parts = [f"step {step}/{max_steps}"]
    for key, label in (("loss", "loss"), ("eval_loss", "eval loss")):
        if isinstance(logs.get(key), (int, float)):
            parts.append(f"{label} {logs[key]:.4f}")
    if tokens_done and elapsed_s > 0:
        parts.append(f"{tokens_done / elapsed_s:.0f} tokens/s")
    timing = f"{_clock(elapsed_s)} elapsed"
    if steps_done > 0 and max_steps > step:
        timing += f", ETA {_clock(elapsed_s / steps_done * (max_steps - step))}"
    parts.append(timing)
    return " | ".join(parts)


def _callback_class():
    from transformers import TrainerCallback

    class ProgressLines(TrainerCallback):
        """One terminal line per logging interval (headless runs)."""

        started: float | None = None  # set when training begins; evaluations before it log too

        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.first_step, self.first_tokens = time.monotonic(), state.global_step, None
            if state.is_world_process_zero:
                start = f" from step {state.global_step}" if state.global_step else ""
                terminal_line(f"training: {state.max_steps} steps{start}")

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs or "train_runtime" in logs:
                return
            if self.started is None:  # an evaluation outside training (before it, or loralab eval)
                if isinstance(logs.get("eval_loss"), (int, float)):
                    terminal_line(f"held-out loss {logs['eval_loss']:.4f}")
                return
            tokens = logs.get("num_tokens")
            if isinstance(tokens, (int, float)) and self.first_tokens is None:
                self.first_tokens = 0.0 if self.first_step == 0 else float(tokens)
            done = float(tokens) - self.first_tokens if isinstance(tokens, (int, float)) else None
            terminal_line(progress_line(state.global_step, state.max_steps, logs, time.monotonic() - self.started,
                                        state.global_step - self.first_step, done))

        def on_train_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                terminal_line(f"training done: step {state.global_step}/{state.max_steps} in "
                              f"{_clock(time.monotonic() - self.started)}")
            self.started = None

    return ProgressLines


def progress_callbacks() -> list:
    """The callbacks this process's progress mode needs ([] in a notebook: the trainer draws its own)."""
    return [_callback_class()()] if progress_mode() == "lines" else []
