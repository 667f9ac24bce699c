"""Colab and Kaggle: one place says where loralab is published, and every notebook's install cell is generated.

pyproject.toml's ``[project.urls]`` and ``version`` are the one place: every badge, install cell, README and docs
line and mkdocs.yml entry that names the repository or a ``loralab @ ...`` install must use that address (and that
version where it pins one). Each notebook's first code cell is the cell ``loralab.runs.install_cell`` generates
(``python -m loralab.runs.notebook_cells`` writes it); the generated cell is run here with a fake runtime (no pip,
no network) to check what it installs, and what it does without a GPU or off Colab and Kaggle.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from loralab.runs.install_cell import (
    NO_GPU,
    TORCHAO_FOR_TORCH,
    XFORMERS_FOR_TORCH,
    imports_unsloth,
    install_cell,
    install_cell_index,
    install_commands,
    is_held,
    read_project,
)

REPO = Path(__file__).resolve().parents[1]
PROJECT = read_project(REPO / "pyproject.toml")
REPOSITORY, VERSION = PROJECT["urls"]["Repository"], PROJECT["version"]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# Everything a reader sees that could name where loralab lives: notebooks, their pages, README, docs, site config.
TEXTS = sorted({*NOTEBOOKS, *(REPO / "docs").rglob("*.md"), *(REPO / "docs" / "notebooks").glob("*.ipynb"),
                REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md", REPO / "mkdocs.yml"})


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        return "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])
    return path.read_text()


def test_pyproject_says_where_loralab_is_published():
    urls = PROJECT["urls"]
    assert set(urls) >= {"Homepage", "Repository", "Documentation"}
    assert urls["Homepage"] == urls["Repository"] == urls["Documentation"] == REPOSITORY
    assert re.fullmatch(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", REPOSITORY), REPOSITORY
    assert str(Version(VERSION)) == VERSION
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert str(citation["version"]) == VERSION, "CITATION.cff's version is pyproject's"


@pytest.mark.parametrize("path", TEXTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_mention_of_the_repository_is_the_pyproject_address(path):
    text = _text(path)
    owner_name = REPOSITORY.removeprefix("https://github.com/")
    for owner, name in re.findall(r"github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)", text):
        if "loralab" in (owner.lower(), name.lower()):
            assert f"{owner}/{name}" == owner_name, f"{path.name} names github.com/{owner}/{name}, not {REPOSITORY}"
    for owner, name, notebook in re.findall(
            r"colab\.research\.google\.com/github/([^/\s]+)/([^/\s]+)/blob/[^/\s]+/([^)\s\"]+)", text):
        assert f"{owner}/{name}" == owner_name, f"{path.name}: a Colab badge for {owner}/{name}"
        assert (REPO / notebook).is_file(), f"{path.name}: a Colab badge for {notebook}, which is no file"
    for notebook in re.findall(r"kaggle\.com/kernels/welcome\?src=https://github\.com/[^/\s]+/[^/\s]+/blob/[^/\s]+/"
                               r"([^)\s\"]+)", text):
        assert (REPO / notebook).is_file(), f"{path.name}: a Kaggle badge for {notebook}, which is no file"
    for url in re.findall(r"\bloralab(?:\[[^\]]*\])? @ ([^\s\"'`)]+)", text):
        if url.startswith("{"):  # the install cell's wheel, a file:// URL made at run time
            continue
        assert url == f"git+{REPOSITORY}@v{VERSION}", f"{path.name} installs loralab from {url}"


def test_the_site_names_the_pyproject_repository():
    assert yaml.safe_load((REPO / "mkdocs.yml").read_text())["repo_url"] == REPOSITORY


def test_the_badges_stand_in_every_notebook_and_a_notebook_named_by_a_badge_is_that_notebook():
    for notebook in NOTEBOOKS:
        first = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
        assert f"colab.research.google.com/github/{REPOSITORY.removeprefix('https://github.com/')}/blob/main/" \
               f"notebooks/{notebook.name})" in first, notebook.name
        assert f"kaggle.com/kernels/welcome?src={REPOSITORY}/blob/main/notebooks/{notebook.name})" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_holds_the_generated_install_cell(path):
    """Regenerate with: python -m loralab.runs.notebook_cells"""
    cells = json.loads(path.read_text())["cells"]
    index = install_cell_index(cells)
    assert index is not None and cells[index - 1]["cell_type"] == "markdown", path.name
    assert all(cell["cell_type"] == "markdown" for cell in cells[:index]), "the install cell is the first code cell"
    unsloth = imports_unsloth(cells)
    assert unsloth is (path.stem[:2] in {"01", "03", "04", "05"}), "00 and 02 run on a CPU and import no unsloth"
    assert "".join(cells[index]["source"]) == install_cell(PROJECT, unsloth=unsloth)


def test_the_install_cell_pins_xformers_and_torchao_within_pyproject():
    specs = {Requirement(r).name: Requirement(r).specifier for extra in PROJECT["optional-dependencies"].values()
             for r in extra} | {Requirement(r).name: Requirement(r).specifier for r in PROJECT["dependencies"]}
    assert all(specs["xformers"].contains(v) for v in XFORMERS_FOR_TORCH.values())
    assert all(specs["torchao"].contains(v) for v in TORCHAO_FOR_TORCH.values())
    assert set(TORCHAO_FOR_TORCH) >= set(XFORMERS_FOR_TORCH)
    torch = specs["torch"]
    assert all(torch.contains(f"{minor}.0") for minor in XFORMERS_FOR_TORCH), "a row for a torch unsloth refuses"


def test_what_pip_may_not_replace():
    assert all(is_held(n) for n in ("torch", "torchvision", "torchaudio", "triton", "nvidia-cublas-cu12",
                                    "nvidia_cudnn_cu12", "cuda-bindings", "cuda-python"))
    assert not any(is_held(n) for n in ("torchao", "torchcodec", "xformers", "transformers", "cut-cross-entropy"))


class FakeRuntime:
    """Colab as the cell sees it: the environment, nvidia-smi, torch's metadata, and pip (which records)."""

    def __init__(self, monkeypatch, tmp_path, *, torch: str = "2.11.0+cu128", gpu: bool = True, hosted: bool = True):
        self.pip_calls: list[list[str]] = []
        self.constraints: list[str] = []
        self.dists = [("torch", torch), ("Torchvision", "0.26.0+cu128"), ("nvidia_cublas_cu12", "12.8.4.1"),
                      ("cuda-bindings", "12.9.7"), ("transformers", "5.15.0"), ("torch", "2.0.0")]  # a shadowed copy
        for name in [n for n in os.environ if n.startswith(("COLAB_", "KAGGLE_"))]:
            monkeypatch.delenv(name)
        if hosted:
            monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
        monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if gpu and name == "nvidia-smi" else None)
        monkeypatch.setattr(subprocess, "run", self.run)
        monkeypatch.setattr(importlib.metadata, "version", lambda name: torch if name == "torch"
                            else pytest.fail(f"the cell asked for {name}'s version"))
        monkeypatch.setattr(importlib.metadata, "distributions", lambda: [
            SimpleNamespace(metadata={"Name": name}, version=version) for name, version in self.dists])

    def run(self, args, **kwargs):
        if args[1:4] == ["-m", "pip", "install"]:
            assert args[4:6] == ["-q", "-c"]
            self.constraints = Path(args[6]).read_text().split()
            self.pip_calls.append(args[7:])
            assert kwargs["env"]["GIT_TERMINAL_PROMPT"] == "0", "git must not wait for a username"
        return subprocess.CompletedProcess(args, 0, "", "")


def _run_cell(unsloth: bool) -> None:
    """Run the generated cell as a notebook kernel would (a fresh namespace)."""
    code = compile(install_cell(PROJECT, unsloth=unsloth), "install-cell", "exec")
    exec(code, {"__name__": "__main__"})  # noqa: S102 - the cell is this repository's own generated code


@pytest.mark.parametrize("unsloth", [True, False])
def test_the_cell_keeps_the_runtimes_torch_and_installs_what_install_commands_says(monkeypatch, tmp_path, capsys,
                                                                                   unsloth):
    runtime = FakeRuntime(monkeypatch, tmp_path)
    _run_cell(unsloth)
    assert runtime.pip_calls == install_commands(PROJECT, "2.11.0+cu128", unsloth=unsloth)
    assert sorted(runtime.constraints) == ["cuda-bindings==12.9.7", "nvidia-cublas-cu12==12.8.4.1",
                                           "torch==2.11.0+cu128", "torchvision==0.26.0+cu128"]
    first, no_deps = runtime.pip_calls
    extra = "[unsloth-deps]" if unsloth else ""
    assert first == [f"loralab{extra} @ git+{REPOSITORY}@v{VERSION}", "torchao==0.18.0"]  # with its dependencies
    assert no_deps[0] == "--no-deps" and no_deps[1:2] == PROJECT["optional-dependencies"]["embedded"]
    assert ("xformers==0.0.35" in no_deps) is unsloth and ("unsloth==2026.10.9" in no_deps) is unsloth
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "torch 2.11.0+cu128 and its CUDA libraries kept" in out[0], out


def test_a_torch_outside_the_tables_gets_no_xformers_and_pyprojects_torchao(monkeypatch, tmp_path, capsys):
    runtime = FakeRuntime(monkeypatch, tmp_path, torch="2.14.1+cu130")
    _run_cell(unsloth=True)
    first, no_deps = runtime.pip_calls
    assert not [s for s in no_deps if s.startswith("xformers")]
    assert not [s for s in first if s.startswith("torchao")], "pyproject's own torchao bound (unsloth-deps) decides"
    assert runtime.pip_calls == install_commands(PROJECT, "2.14.1+cu130", unsloth=True)
    assert "xformers none" in capsys.readouterr().out


def test_a_wheel_next_to_the_notebook_is_installed_instead_of_the_unpublished_repository(monkeypatch, tmp_path):
    runtime = FakeRuntime(monkeypatch, tmp_path)
    wheel = tmp_path / f"loralab-{VERSION}-py3-none-any.whl"
    wheel.write_bytes(b"")
    _run_cell(unsloth=True)
    assert runtime.pip_calls[0][0] == f"loralab[unsloth-deps] @ {wheel.as_uri()}"
    assert runtime.pip_calls[1:] == install_commands(PROJECT, "2.11.0+cu128", unsloth=True)[1:]


def test_without_a_gpu_the_cell_says_so_in_one_line_and_installs_nothing(monkeypatch, tmp_path, capsys):
    runtime = FakeRuntime(monkeypatch, tmp_path, gpu=False)
    _run_cell(unsloth=True)
    assert runtime.pip_calls == []
    assert capsys.readouterr().out == "".join(NO_GPU) + "\n"
    _run_cell(unsloth=False)  # notebooks 00 and 02 run on a CPU: their cell installs there too
    assert len(runtime.pip_calls) == 2


def test_off_colab_and_kaggle_the_cell_does_nothing(monkeypatch, tmp_path, capsys):
    runtime = FakeRuntime(monkeypatch, tmp_path, hosted=False)
    for unsloth in (True, False):
        _run_cell(unsloth)
    assert runtime.pip_calls == [] and capsys.readouterr().out == ""


def test_a_failed_pip_stops_the_cell_with_pips_words(monkeypatch, tmp_path):
    runtime = FakeRuntime(monkeypatch, tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: subprocess.CompletedProcess(
        args, int(args[0] != "nvidia-smi"), "", "fatal: could not read Username for 'https://github.com': "
        "terminal prompts disabled"))
    with pytest.raises(RuntimeError, match=r"(?s)not published yet.*could not read Username"):
        _run_cell(unsloth=True)
    assert runtime.pip_calls == []


def test_the_docs_say_how_to_install_on_colab_and_how_to_refresh_the_snapshots():
    page = (REPO / "docs" / "install.md").read_text()
    assert "not published" in page and "make check-hosted" in page and "hosted/" in page
    assert REPOSITORY in page
