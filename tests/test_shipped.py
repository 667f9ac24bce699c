"""The shipped notebooks and params: found in the checkout, else in the package; ``loralab notebooks``;
``loralab run 01``; the default runs and sweeps folders (./runs, ./sweeps; the repository's in a checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loralab.cli import main
from loralab.runs import copy_notebooks, runner, shipped

REPO = Path(__file__).resolve().parents[1]
NB01 = REPO / "notebooks" / "01_qlora_finetune.ipynb"
STEMS = sorted(p.stem for p in (REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture
def packaged(tmp_path, monkeypatch) -> Path:
    """loralab as a wheel sees it: no checkout, the notebooks and params in loralab/shipped/."""
    package = tmp_path / "site-packages" / "loralab" / "shipped"
    copy_notebooks.copy_notebooks(package)  # the wheel's layout is the copy's: notebooks/, params/
    monkeypatch.setattr(shipped, "checkout_root", lambda: None)
    monkeypatch.setattr(shipped, "PACKAGE_SHIPPED", package)
    return package


def one_line_error(capsys, code: int, *expected: str) -> str:
    out = capsys.readouterr().out
    assert code == 2, out
    assert out.startswith("error: ") and len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
    for text in expected:
        assert text in out, f"{text!r} not in: {out}"
    return out


# --- the lookup ---------------------------------------------------------------------------------------

def test_a_checkout_reads_its_own_notebooks_and_params():
    assert shipped.checkout_root() == REPO
    assert shipped.notebooks_dir() == REPO / "notebooks"
    assert shipped.params_dir("01_qlora_finetune") == REPO / "params" / "01_qlora_finetune"
    assert [p.stem for p in shipped.shipped_notebooks()] == STEMS
    assert not (REPO / "src" / "loralab" / "shipped").exists(), "copies of notebooks/params belong in the wheel only"


def test_without_a_checkout_the_package_copies_are_read(packaged):
    assert shipped.notebooks_dir() == packaged / "notebooks"
    assert shipped.find_notebook("01") == packaged / "notebooks" / "01_qlora_finetune.ipynb"
    assert (shipped.params_dir("01_qlora_finetune") / "smoke.yaml").is_file()


@pytest.mark.parametrize("name", ["01", "1", "01_qlora_finetune", "01_qlora_finetune.ipynb", "01_ql", "qlora"])
def test_a_notebook_by_number_or_name(name):
    assert shipped.find_notebook(name) == NB01
    assert shipped.find_notebook("0").stem == "00_lora_basics"


def test_no_or_several_matching_notebooks_list_them(packaged):
    with pytest.raises(ValueError, match="no notebook '07'; the notebooks are 00_lora_basics, 01_qlora_finetune"):
        shipped.find_notebook("07")
    (packaged / "notebooks" / "01_other.ipynb").write_text("{}")
    with pytest.raises(ValueError, match="'01' matches 01_other, 01_qlora_finetune: give more of the name"):
        shipped.find_notebook("01")
    assert shipped.find_notebook("01_q").name == NB01.name


def test_what_counts_as_a_notebook_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "01").write_text("")
    assert shipped.names_a_notebook("02") and shipped.names_a_notebook("02_sweep_report.ipynb")
    assert not shipped.names_a_notebook("01"), "a file of that name here is a path"
    assert not shipped.names_a_notebook("notebooks/01_qlora_finetune.ipynb")
    assert not shipped.names_a_notebook("smoke.yaml")
    assert shipped.notebook_argument("01_qlora_finetune.ipynb") == NB01
    assert shipped.notebook_argument("02") == REPO / "notebooks" / "02_sweep_report.ipynb"
    assert shipped.notebook_argument("01") == tmp_path.resolve() / "01", "a path here stays a path"
    assert shipped.notebook_argument("nope.ipynb") == tmp_path.resolve() / "nope.ipynb"


def test_params_files_here_first_then_shipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    smoke = REPO / "params" / "01_qlora_finetune" / "smoke.yaml"
    assert shipped.find_params_file("smoke.yaml", NB01) == str(smoke)
    assert shipped.find_params_file("params/01_qlora_finetune/smoke.yaml", NB01) == str(smoke)
    assert shipped.find_params_file("nope.yaml", NB01) == "nope.yaml"
    assert shipped.find_params_file("../smoke.yaml", NB01) == "../smoke.yaml"
    (tmp_path / "smoke.yaml").write_text("lora_r: 4\n")
    assert shipped.find_params_file("smoke.yaml", NB01) == "smoke.yaml", "a file here wins"


def test_runs_and_sweeps_go_to_the_current_folder_outside_a_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped.working_folder("runs") == tmp_path.resolve() / "runs"
    monkeypatch.chdir(REPO / "notebooks")
    assert shipped.working_folder("runs") == REPO / "runs", "inside the checkout: the repository's runs/"
    assert shipped.working_folder("sweeps") == REPO / "sweeps"


# --- loralab notebooks --------------------------------------------------------------------------------

def test_loralab_notebooks_copies_notebooks_and_params(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["notebooks"]) == 0
    dest = tmp_path / "loralab-notebooks"
    assert sorted(p.stem for p in (dest / "notebooks").glob("*.ipynb")) == STEMS
    params = sorted(p.relative_to(REPO / "params") for p in (REPO / "params").rglob("*.yaml"))
    assert sorted(p.relative_to(dest / "params") for p in (dest / "params").rglob("*.yaml")) == params
    assert (dest / "notebooks" / NB01.name).read_bytes() == NB01.read_bytes()
    out = capsys.readouterr().out
    assert f"wrote {len(STEMS) + len(params)} files" in out and "01_qlora_finetune/smoke.yaml" in out


def test_loralab_notebooks_refuses_to_overwrite_unless_forced(tmp_path, capsys):
    dest = tmp_path / "nb"
    assert main(["notebooks", str(dest)]) == 0
    mine = dest / "params" / "01_qlora_finetune" / "smoke.yaml"
    mine.write_text("lora_r: 4\n")
    capsys.readouterr()
    one_line_error(capsys, main(["notebooks", str(dest)]), "is already there", "--force")
    assert mine.read_text() == "lora_r: 4\n", "nothing is written when a file is there"
    assert main(["notebooks", str(dest), "--force"]) == 0
    assert mine.read_bytes() == (REPO / "params" / "01_qlora_finetune" / "smoke.yaml").read_bytes()


def test_loralab_notebooks_into_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    one_line_error(capsys, main(["notebooks", str(tmp_path / "f")]), "is a file")


# --- loralab run 01 -------------------------------------------------------------------------------------

@pytest.fixture
def started(monkeypatch, tmp_path_factory) -> dict:
    """Run ``loralab run`` up to the kernel: what run_notebook received; nothing executed or written."""
    seen: dict = {}

    def fake_run(notebook, parameters, runs_root, **kwargs):
        seen.update(notebook=Path(notebook), parameters=parameters, runs_root=Path(runs_root), **kwargs)
        return tmp_path_factory.mktemp("run")

    monkeypatch.setattr(runner, "run_notebook", fake_run)
    return seen


def test_run_a_notebook_by_number_with_a_shipped_params_file(tmp_path, monkeypatch, capsys, started):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "01", "-f", "smoke.yaml", "-p", "max_steps", "2"]) == 0
    smoke = REPO / "params" / "01_qlora_finetune" / "smoke.yaml"
    assert started["notebook"] == NB01
    assert started["runs_root"] == tmp_path.resolve() / "runs", "outside a checkout runs go to ./runs"
    assert started["params_files"] == [str(smoke)]
    assert started["parameters"]["lora_r"] == 8 and started["parameters"]["max_steps"] == 2
    assert f"using the shipped {smoke}" in capsys.readouterr().out


def test_run_inside_the_checkout_keeps_the_repository_runs_folder(monkeypatch, started):
    monkeypatch.chdir(REPO / "notebooks")
    assert main(["run", "01_qlora_finetune", "-f", "../params/01_qlora_finetune/smoke.yaml"]) == 0
    assert started["runs_root"] == REPO / "runs"
    assert started["params_files"] == ["../params/01_qlora_finetune/smoke.yaml"]


def test_run_from_the_package_copies(tmp_path, monkeypatch, packaged, started):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", "1", "-f", "params/01_qlora_finetune/smoke.yaml"]) == 0
    assert started["notebook"] == packaged / "notebooks" / NB01.name
    assert started["params_files"] == [str(packaged / "params" / "01_qlora_finetune" / "smoke.yaml")]


@pytest.mark.parametrize("name, expected", [("07", "no notebook '07'; the notebooks are " + ", ".join(STEMS)),
                                            ("8", "no notebook '8'"),
                                            ("nope", "no notebook 'nope'"),
                                            ("nope.ipynb", "nope.ipynb does not exist")])
def test_run_a_bad_notebook_name(tmp_path, monkeypatch, capsys, started, name, expected):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, main(["run", name, "-f", "smoke.yaml"]), expected)
    assert not started and not (tmp_path / "runs").exists()


def test_run_a_missing_notebook_path_names_the_shipped_ones(tmp_path, monkeypatch, capsys, started):
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, main(["run", "notebooks/nope.ipynb"]), "notebooks/nope.ipynb does not exist",
                   "01_qlora_finetune", "loralab run 01")


# --- sweeps ---------------------------------------------------------------------------------------------

def test_a_sweep_spec_from_anywhere_goes_to_the_current_folder(tmp_path, monkeypatch, packaged):
    from loralab.sweeps.report import resolve_sweep_dir
    from loralab.sweeps.sweep import load_sweep_spec, plan_sweep

    monkeypatch.chdir(tmp_path)
    spec, name = load_sweep_spec("params/sweeps/targets.yaml")
    assert name == "targets" and spec.base == "params/01_qlora_finetune/sweep_base.yaml"
    plan = plan_sweep("params/sweeps/targets.yaml")
    assert plan.notebook == packaged / "notebooks" / NB01.name
    assert plan.base == packaged / "params" / "01_qlora_finetune" / "sweep_base.yaml"
    assert plan.sweep_dir == tmp_path.resolve() / "sweeps" / "targets"
    (tmp_path / "sweeps" / "targets").mkdir(parents=True)
    (tmp_path / "sweeps" / "targets" / "sweep.json").write_text("{}")
    assert resolve_sweep_dir("") == tmp_path.resolve() / "sweeps" / "targets"
