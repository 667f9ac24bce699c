"""The ``loralab`` command line.

    loralab run notebooks/01_qlora_finetune.ipynb -f params/01_qlora_finetune/default.yaml
    loralab plan meta-llama/Llama-3.1-8B --gpu-gb 16
    loralab sweep params/sweeps/rank.yaml
    loralab eval runs/<run>/adapter --base

Each subcommand lives in its own module; this file only dispatches, so ``loralab plan`` answers
without importing torch.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loralab`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "run": "loralab.runs.runner",
        "plan": "loralab.plan.cli",
        "sweep": "loralab.sweeps.cli",
        "eval": "loralab.eval.cli",
    }
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: loralab {" + ",".join(commands) + "} ...   (loralab COMMAND --help for details)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    module = importlib.import_module(commands[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
