"""What it takes to repeat a run, written into its folder, and finding a run to resume.

``loralab run`` writes ``loralab_run.json`` into the run folder before the notebook starts::

    from loralab.runs.record import write_run_record, find_unfinished_run, code_version
    write_run_record(run_dir, notebook, parameters, resolved, command=sys.argv, params_files=["smoke.yaml"])
    code_version()   # {"commit": "7ebe497...", "dirty": False, "source": "git"}: the loralab code that ran
    find_unfinished_run("runs", "01_qlora_finetune", resolved)   # newest folder to resume, or None

The record holds the command line, per params file its path, SHA-256 and parsed mapping (never its
text: a token a user commented out in the YAML stays out of the run folder), the merged parameters,
the resolved (validated, defaults filled) params, the loralab commit, library versions and one entry
per attempt.
A folder is *unfinished* while it has no ``metrics.json`` (written last, atomically). While a runner
works in a folder it holds an exclusive ``flock`` on ``.loralab-run.lock`` (released by the kernel
when the process dies, even on SIGKILL), so a folder that is still running is never picked up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from loralab.atomic_file import write_text_aside

RECORD_NAME = "loralab_run.json"
LOCK_NAME = ".loralab-run.lock"


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], check=False, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """The loralab commit that runs: from its git checkout, or from pip's record of a git install."""
    try:
        direct_url = json.loads(metadata.distribution("loralab").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        direct_url = {}
    if direct_url.get("vcs_info", {}).get("commit_id"):
        return {"commit": direct_url["vcs_info"]["commit_id"], "dirty": False, "source": direct_url.get("url")}
    folder = Path(__file__).resolve().parent
    if direct_url.get("url", "").startswith("file://"):
        folder = Path(unquote(urlparse(direct_url["url"]).path))
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "source": None}
    changes = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(changes), "source": "git"}


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so records compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def read_run_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run folder's record, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / RECORD_NAME).read_text())
    except (OSError, ValueError):
        return None


def params_file_entry(path: str | Path) -> dict[str, Any]:
    """What the record keeps of one params file: ``{"path", "resolved_path", "sha256", "params"}``.

    ``params`` is the parsed mapping (what the notebook receives), ``sha256`` the digest of the file's
    bytes (which tells whether a file is the one that ran). The text itself, comments included, is not
    kept. ``sha256`` and ``params`` are None for a file that is gone; ``params`` is None (and ``error``
    says why) for one that does not parse.
    """
    from loralab.params.errors import ParamsError
    from loralab.params.yaml_reader import read_params_file

    file = Path(path)
    entry: dict[str, Any] = {"path": str(path), "resolved_path": str(file.resolve()), "sha256": None, "params": None}
    if not file.is_file():
        return entry
    entry["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    try:
        entry["params"] = _as_json(read_params_file(file))
    except ParamsError as error:
        entry["error"] = str(error)
    return entry


def write_run_record(run_dir: str | Path, notebook: str | Path, parameters: dict[str, Any],
                     resolved: dict[str, Any] | None, command: list[str] | None = None,
                     params_files: list[str] | None = None) -> Path:
    """Write (or, for a resumed folder, extend) ``loralab_run.json``; written aside, then renamed."""
    from loralab.model.versions import library_versions

    run_dir = Path(run_dir)
    attempt = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
               "code_version": code_version(), "versions": library_versions()}
    record = read_run_record(run_dir) or {
        "notebook": Path(notebook).name,
        "created_ns": time.time_ns(),
        "params_files": [params_file_entry(p) for p in params_files or []],  # path, SHA-256, parsed params
        "parameters": _as_json(parameters),
        "resolved_params": _as_json(resolved),
        "attempts": [],
    }
    record["attempts"].append(attempt)
    return write_text_aside(run_dir / RECORD_NAME, json.dumps(record, indent=2, sort_keys=True, default=str))


def run_in_progress(run_dir: str | Path) -> bool:
    """True while some process holds the folder's run lock."""
    import fcntl

    lock = Path(run_dir) / LOCK_NAME
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False  # a file system without flock: assume the old run is gone
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def hold_run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the folder's run lock while the block runs (a no-op where flock is not supported)."""
    import fcntl

    with open(Path(run_dir) / LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInProgressError(f"{run_dir} is in use by another loralab run; wait for it or pass "
                                     "--fresh to start a new run folder.") from None
        except OSError:
            pass
        yield


class RunInProgressError(ValueError):
    """Another process is running in this run folder."""


def find_unfinished_run(runs_root: str | Path, notebook: str | Path, resolved: dict[str, Any]) -> Path | None:
    """The newest folder under ``runs_root`` that ran ``notebook`` with exactly ``resolved`` params, has
    no ``metrics.json`` and is not running now; None when there is none."""
    runs_root = Path(runs_root)
    if not runs_root.is_dir():
        return None
    wanted = _as_json(resolved)
    candidates = []
    for folder in runs_root.iterdir():
        record = read_run_record(folder) if folder.is_dir() else None
        if (record is None or record.get("notebook") != Path(notebook).name
                or record.get("resolved_params") != wanted or (folder / "metrics.json").exists()
                or run_in_progress(folder)):
            continue
        candidates.append((record.get("created_ns", 0), folder.name, folder))
    return max(candidates)[2] if candidates else None
