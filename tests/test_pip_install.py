"""`pip install loralab` works outside the checkout: the wheel carries the notebooks and params files,
``loralab notebooks`` copies them, and ``loralab run 01`` trains (the tiny random model) from an unrelated
folder into ./runs.

The wheel is built from a copy of the sources (nothing is written into the checkout) and installed
into a fresh venv. That venv sees the test venv's packages (torch, unsloth, papermill, ipykernel)
through a .pth line: ``--system-site-packages`` would show the base interpreter's packages, not the
test venv's, and a plain path line does not run the test venv's own .pth files, so the editable
install of the checkout stays out and the wheel's copy of loralab is the one imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "notebooks", "params", "src")


def _run(args: list, cwd: Path, env: dict[str, str], timeout: int, kill_tree=None) -> subprocess.CompletedProcess:
    """Run ``args``; fail with its output when it exits non-zero or runs past ``timeout`` (then kill its tree)."""
    process = subprocess.Popen([str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        (kill_tree or (lambda p: (p.kill(), p.wait())))(process)  # the notebook kernel too
        out, err = process.communicate()
        pytest.fail(f"{args} ran past {timeout} s:\n{out[-3000:]}\n{err[-3000:]}")
    assert process.returncode == 0, f"{args} exited {process.returncode}:\n{out[-3000:]}\n{err[-3000:]}"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A wheel built from a copy of the sources, installed into a new venv; its paths and environment."""
    root = tmp_path_factory.mktemp("pip-install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints"))
        else:
            shutil.copy2(REPO / name, source / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
          "-q", "-w", root / "dist", "."], cwd=source, env=env, timeout=120)
    wheel = next((root / "dist").glob("loralab-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, env=env, timeout=60)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--force-reinstall",
          "--disable-pip-version-check", "-q", wheel], cwd=root, env=env, timeout=120)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root,
                     env=env, timeout=60).stdout.strip())
    (site / "zz_test_venv_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env.update(UNSLOTH_CPU_BF16="0", PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return {"venv": venv, "python": python, "site": site, "env": env, "work": root / "work"}


@pytest.mark.slow
def test_the_wheel_ships_notebooks_and_runs_outside_the_checkout(installed, kill_tree):
    from loralab.runs.record import code_version

    started = time.perf_counter()
    venv, python, site, env = installed["venv"], installed["python"], installed["site"], installed["env"]
    work = installed["work"]
    work.mkdir()
    assert not work.resolve().is_relative_to(REPO)

    # the wheel's copy of loralab is imported, and it finds its own shipped notebooks and params
    probe = ("import loralab, sys; from loralab.runs.shipped import checkout_root, notebooks_dir, params_dir; "
             "from jupyter_client.kernelspec import KernelSpecManager; "
             "print(loralab.__file__); print(checkout_root()); print(notebooks_dir()); print(params_dir()); "
             "print(KernelSpecManager().get_kernel_spec('python3').argv[0])")
    module, checkout, notebooks, params, kernel_python = _run([python, "-c", probe], cwd=work, env=env,
                                                                timeout=120).stdout.split()
    assert Path(module).is_relative_to(site), module
    assert checkout == "None"
    assert Path(notebooks) == site / "loralab" / "shipped" / "notebooks"
    assert (Path(notebooks) / "01_qlora_finetune.ipynb").is_file()
    assert (Path(params) / "01_qlora_finetune" / "smoke.yaml").is_file()
    assert Path(kernel_python) == python, "papermill's python3 kernel must be the new venv's interpreter"

    copied = _run([venv / "bin" / "loralab", "notebooks", "nb"], cwd=work, env=env, timeout=120)
    assert "wrote" in copied.stdout
    assert (work / "nb" / "notebooks" / "01_qlora_finetune.ipynb").is_file()
    assert (work / "nb" / "params" / "01_qlora_finetune" / "smoke.yaml").is_file()
    assert (work / "nb" / "params" / "sweeps" / "rank.yaml").is_file()

    ran = _run([venv / "bin" / "loralab", "run", "01", "-f", "smoke.yaml", "-p", "model_name", TINY_MODEL], cwd=work,
               env=env, timeout=600, kill_tree=kill_tree)
    assert f"using the shipped {params}/01_qlora_finetune/smoke.yaml" in ran.stdout
    metrics_files = list((work / "runs").glob("*/metrics.json"))
    assert len(metrics_files) == 1, ran.stdout
    metrics = json.loads(metrics_files[0].read_text())
    assert metrics["train_loss_last"] < metrics["train_loss_first"]
    # the kernel imported the wheel's loralab: an install from a wheel file knows no commit, while the
    # checkout's (editable) loralab reports its git commit
    if code_version()["commit"] is not None:
        assert metrics["code_version"]["commit"] is None, metrics["code_version"]
    shipped_notebooks = site / "loralab" / "shipped" / "notebooks"
    assert sorted(p.name for p in shipped_notebooks.iterdir()) == sorted(p.name for p in (REPO / "notebooks")
                                                                         .glob("*.ipynb")), \
        "the run wrote into the installed package"
    print(f"pip install test: {time.perf_counter() - started:.0f} s after the build")
