"""The stack's known messages that do not apply are hidden where they arise; everything else still shows.

Each probe runs in its own process: ``quiet_known_warnings`` changes that process's loggers and warning filters
(it is the notebook's explicit call), and the test process stays as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from loralab.model.known_messages import KNOWN_MESSAGES, KNOWN_WARNINGS

SRC = Path(__file__).resolve().parents[1] / "src"

# The messages as the libraries write them (torch 2.13, torchao 0.18, TRL 1.15, tqdm 4.70): the text a red
# block showed on the notebook pages before the notebooks called quiet_known_warnings.
AS_WRITTEN = {
    "torch.utils._pytree": (("%s is an Enum subclass and is now natively supported by torch.compile as an opaque "
                             "value type. Calling register_constant() on Enum subclasses is deprecated and will be "
                             "an error in a future release."), "<enum 'KernelPreference'>"),
    "torchao.kernel.intmm": ("Warning: Detected no triton, on systems without Triton certain kernels will not work",
                             None),
    "torchao": ("Failed to load %s: Could not load this library: %s",
                ".venv/lib/python3.11/site-packages/torchao/_C_mxfp8.cpython-310-x86_64-linux-gnu.so"),
    "trl.trainer.sft_trainer": (("[RANK 0] Padding-free training is enabled, but the attention implementation is "
                                 "not set to a supported Flash Attention variant."), None),
}

PROBE = r"""
import json, logging, sys, warnings

seen = []
class Keep(logging.Handler):
    def emit(self, record):
        seen.append(record.name + ": " + record.getMessage())
logging.getLogger().addHandler(Keep())

if sys.argv[1] == "quiet":
    from loralab.model import quiet_known_warnings
    loggers = quiet_known_warnings()
    assert quiet_known_warnings() == loggers  # twice: nothing added
    assert all(len(logging.getLogger(name).filters) == 1 for name in loggers)

for name, (message, arg) in json.loads(sys.argv[2]).items():
    args = (arg,) if message.count("%s") == 1 else (arg, arg) if arg else ()
    logging.getLogger(name).warning(message, *args)
    logging.getLogger(name).warning("another message of " + name)  # not a known one: it shows
logging.getLogger("somewhere.else").warning("Detected no triton")  # a known text on another logger: it shows

with warnings.catch_warnings(record=True) as caught:
    hint = "IProgress not found. Please update jupyter and ipywidgets."
    warnings.warn_explicit(hint, UserWarning, "tqdm/auto.py", 21, module="tqdm.auto")
    warnings.warn_explicit(hint, UserWarning, "elsewhere.py", 3, module="elsewhere")
    warnings.warn_explicit("another tqdm warning", UserWarning, "tqdm/auto.py", 22, module="tqdm.auto")
    hub = "The `HF_HUB_ENABLE_HF_TRANSFER` environment variable is deprecated as 'hf_transfer' is not used anymore."
    warnings.warn_explicit(hub, FutureWarning, "huggingface_hub/constants.py", 302, module="huggingface_hub.constants")
print(json.dumps({"logged": seen, "warned": [f"{w.filename}: {w.message}" for w in caught]}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", PROBE, mode, json.dumps(AS_WRITTEN)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_known_message_is_one_the_probe_writes():
    assert {known.logger for known in KNOWN_MESSAGES} == set(AS_WRITTEN)
    assert all(known.why for known in (*KNOWN_MESSAGES, *KNOWN_WARNINGS))
    assert {known.module for known in KNOWN_WARNINGS} == {r"tqdm\.auto", r"huggingface_hub\.constants"}


def test_without_the_call_every_message_shows():
    seen = _probe("loud")
    assert len(seen["logged"]) == 2 * len(AS_WRITTEN) + 1
    assert len(seen["warned"]) == 4


def test_the_call_hides_the_known_messages_and_nothing_else():
    seen = _probe("quiet")
    assert sorted(seen["logged"]) == sorted([f"{name}: another message of {name}" for name in AS_WRITTEN]
                                            + ["somewhere.else: Detected no triton"])
    assert seen["warned"] == ["elsewhere.py: IProgress not found. Please update jupyter and ipywidgets.",
                              "tqdm/auto.py: another tqdm warning"]  # the hub's deprecation: hidden
