"""The ``loralab`` command line.

    loralab run notebooks/01_qlora_finetune.ipynb -f params/01_qlora_finetune/default.yaml
    loralab run 01 -f colab_t4.yaml --check     # validate params and data, estimate memory; run nothing
    loralab plan meta-llama/Llama-3.1-8B --gpu-gb 16
    loralab sweep params/sweeps/rank.yaml
    loralab eval runs/<run>/adapter --base
    loralab notebooks my-lab          # copy the shipped notebooks and params files into my-lab/
    loralab --help                    # every command with one line; loralab COMMAND --help for its options

Each subcommand lives in its own module with its own options; this file only dispatches, so ``loralab
plan`` answers without importing torch. It is also the one error boundary every command shares: a mistake
a user can make (a bad parameter, a missing file, a folder that cannot be written, a notebook that stopped
on an error) prints ``error: <what and where, and what to do>`` on one line and exits with 2; ``--debug``
shows the traceback. The commands' modules raise and leave the printing to this file.
"""

from __future__ import annotations

import argparse
import difflib
import sys

# name -> (module with main(argv) -> int, the line `loralab --help` shows)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("loralab.runs.runner",
            "run a notebook headless into a new run folder (--check: only validate params and data, estimate memory)"),
    "plan": ("loralab.plan.cli", "will full fine-tuning, LoRA or QLoRA fit on a GPU? (memory estimate, no torch)"),
    "sweep": ("loralab.sweeps.cli", "run a sweep spec (a grid or a list of runs of one notebook) and compare them"),
    "eval": ("loralab.eval.cli", "score adapters (and the bare base model) on held-out rows"),
    "notebooks": ("loralab.runs.copy_notebooks", "copy the shipped notebooks and params files into a folder"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: what ``loralab --help`` prints (each command parses its own options)."""
    parser = argparse.ArgumentParser(
        prog="loralab", description="LoRA / QLoRA fine-tuning notebooks, run headless or planned ahead.",
        epilog="loralab COMMAND --help shows that command's options. --debug (anywhere) shows the traceback "
               "of an error instead of one line.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (_, line) in COMMANDS.items():
        commands.add_parser(name, help=line, add_help=False)
    return parser


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
    return " ".join(str(error).split())  # one line, whatever the message's own line breaks


def _no_command(argv: list[str]) -> int:
    """``loralab`` alone, or with a word that is no command: say so, list the commands, exit 2."""
    if not argv:
        problem = "no command given"
    else:
        close = difflib.get_close_matches(argv[0], list(COMMANDS), n=1)
        problem = f"unknown command {argv[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    print(f"error: {problem}; choose one of: {', '.join(COMMANDS)} (listed below).\n")
    print(build_parser().format_help(), end="")
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loralab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if argv and argv[0] in ("-h", "--help"):
        print(build_parser().format_help(), end="")
        return 0
    if not argv or argv[0] not in COMMANDS:
        return _no_command(argv)
    import importlib

    from loralab.params.errors import RunFailed

    try:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    except (ValueError, OSError, RunFailed) as error:  # ParamsError, DatasetError, a notebook that stopped
        if debug:
            raise
        print(f"error: {user_message(error)}")
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted; what was written so far is kept (run the same command again to resume a run).")
        return 130
    except SystemExit as done:  # argparse: --help (0) or a usage error it printed (2)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
            return 1
        return done.code or 0


if __name__ == "__main__":
    raise SystemExit(main())
