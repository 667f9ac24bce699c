"""The ``loralab`` command line.

    loralab run notebooks/01_qlora_finetune.ipynb -f params/01_qlora_finetune/default.yaml
    loralab plan meta-llama/Llama-3.1-8B --gpu-gb 16
    loralab sweep params/sweeps/rank.yaml
    loralab eval runs/<run>/adapter --base
    loralab notebooks my-lab          # copy the shipped notebooks and params files into my-lab/

Each subcommand lives in its own module; this file only dispatches, so ``loralab plan`` answers
without importing torch. It is also the one error boundary: a mistake a user can make (a bad
parameter, a missing file, a folder that cannot be written, a notebook that stopped on an error)
prints ``error: <what and where, and what to do>`` and exits with 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import sys

COMMANDS = {
    "run": "loralab.runs.runner",
    "plan": "loralab.plan.cli",
    "sweep": "loralab.sweeps.cli",
    "eval": "loralab.eval.cli",
    "notebooks": "loralab.runs.copy_notebooks",
}


def user_message(error: BaseException) -> str:
    """One line for an error a user can cause; file-system errors name the path and what to do."""
    if isinstance(error, OSError) and error.filename:
        what = {FileNotFoundError: "does not exist", PermissionError: "is not readable or writable for this user",
                IsADirectoryError: "is a folder where a file was expected",
                NotADirectoryError: "is a file where a folder was expected",
                FileExistsError: "is already there"}.get(type(error), error.strerror or "cannot be used")
        return f"{error.filename} {what}."
    if isinstance(error, OSError) and error.errno == 28:
        return "the disk is full; free some space (run folders hold adapters and checkpoints) and run again."
    return str(error)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loralab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: loralab {" + ",".join(COMMANDS) + "} ... [--debug]   (loralab COMMAND --help for details)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib
    import os

    from loralab.params.errors import RunFailed

    before = os.environ.get("LORALAB_DEBUG")
    if debug:
        os.environ["LORALAB_DEBUG"] = "1"  # the subcommands re-raise instead of printing one line
    try:
        module = importlib.import_module(COMMANDS[argv[0]])
        return int(module.main(argv[1:]) or 0)
    except (ValueError, OSError, RunFailed) as error:
        if debug:
            raise
        print(f"error: {user_message(error)}")
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted; what was written so far is kept (run the same command again to resume a run).")
        return 130
    finally:
        if debug and before is None:
            os.environ.pop("LORALAB_DEBUG", None)


if __name__ == "__main__":
    raise SystemExit(main())
