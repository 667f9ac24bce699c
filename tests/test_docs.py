"""The front door and the docs site: a short README, pages that exist, references generated from the code.

The fast tests check the README's size and links, the site's navigation, and the reference pages in
``docs/reference/``: committed, and equal to what ``scripts/docs_reference.py`` generates from
``CONTRACTS`` and the parsers (``make docs-reference`` writes them). The strict site build is a slow test
and part of ``make docs``; it fails, not skips, when the docs packages are missing (``pip install -e ".[docs]"``; ``make setup`` installs
them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from loralab.cli import COMMANDS, main
from loralab.params.contracts import CONTRACTS

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    """A module of scripts/ (the docs tooling is not part of the package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


docs_reference, notebook_pages = _script("docs_reference"), _script("notebook_pages")
cli_reference, command_help, default_of = docs_reference.cli_reference, docs_reference.command_help, docs_reference.default_of
params_reference, reference_pages = docs_reference.params_reference, docs_reference.reference_pages
value_range, page_drift = docs_reference.value_range, notebook_pages.page_drift
DOCS = REPO / "docs"
README = (REPO / "README.md").read_text()
GENERATED = {"index.md"}  # written while the site builds, by docs/hooks/as_on_github.py


def test_readme_is_a_front_door():
    lines = README.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move reference material into docs/"
    dated = re.findall(r"20\d\d-\d\d-\d\d", README)
    assert not dated, f"README.md holds dated history {dated}; dated measurements belong in docs/performance.md"
    for must in ("make run", "make test", "loralab notebooks", "loralab run", "loralab eval", "--check"):
        assert must in README, must
    for command, (_, line) in COMMANDS.items():  # the README's list of commands is `loralab --help`'s
        assert re.search(rf"^{command} +{re.escape(line)}$", README, flags=re.MULTILINE), command


def test_only_the_performance_page_dates_its_figures():
    """A page states what holds now and links to performance.md for when and where a figure was measured;
    history is git's. A date inside code (a file name such as ``hosted/colab-gpu-2026-08-19.txt``) is not
    history."""
    code = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
    dated = {
        str(page.relative_to(REPO)): found
        for page in sorted(DOCS.rglob("*.md"))
        if page.name != "performance.md"
        and (found := re.findall(r"20\d\d-\d\d-\d\d", code.sub("", page.read_text())))
    }
    assert not dated, f"dated sentences outside docs/performance.md: {dated}"


def test_readme_has_a_badge_row_per_notebook_as_in_its_first_cell():
    import json

    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        first = "".join(json.loads(notebook.read_text())["cells"][0]["source"])
        badges = re.findall(r"\[!\[[^\]]*\]\([^)]*\)\]\([^)]*\)", first)
        assert len(badges) == 2, notebook.name
        for badge in badges:
            assert badge in README, f"README's badge for {notebook.name} differs from the notebook's first cell"


def test_readme_links_into_docs_point_at_pages():
    links = re.findall(r"\]\(docs/([^)#]+)", README)
    assert links
    for link in links:
        assert (DOCS / link).is_file() or link in GENERATED, f"README links to docs/{link}, which no page is"


def test_every_page_in_the_nav_exists_and_every_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["strict"] is True

    def pages(nav):
        for item in nav:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from (pages(value) if isinstance(value, list) else [value])

    nav = list(pages(config["nav"]))
    for page in nav:
        assert (DOCS / page).is_file() or page in GENERATED or (REPO / page).is_file(), page
    written = {p.relative_to(DOCS).as_posix() for p in DOCS.glob("*.md")}
    assert written <= set(nav), f"pages outside the nav: {written - set(nav)}"
    notebooks = {f"notebooks/{p.name}" for p in (REPO / "notebooks").glob("*.ipynb")}
    assert notebooks <= set(nav), f"notebooks without a page: {notebooks - set(nav)}"


@pytest.mark.parametrize("notebook", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_each_notebook_page_shows_the_notebook_as_shipped_with_the_outputs_of_a_run(notebook):
    """docs/notebooks/ holds each notebook executed on its smoke params (make docs-notebooks); a page whose
    cells differ from the notebook's, or that has no outputs or shows an error, is stale."""
    problems = page_drift(notebook, DOCS / "notebooks" / notebook.name)
    assert not problems, f"{problems}: run `make docs-notebooks NOTEBOOKS={notebook.stem[:2]}` to render the page again"
    page = (DOCS / "notebooks" / notebook.name).read_text()
    for machine_path in (str(REPO), str(Path.home())):
        assert machine_path not in page, f"{notebook.name}'s page shows this machine's path {machine_path}"


def test_a_changed_notebook_makes_its_page_stale(tmp_path):
    import json

    shipped = REPO / "notebooks" / "01_qlora_finetune.ipynb"
    page = DOCS / "notebooks" / shipped.name
    assert page_drift(shipped, page) == []
    changed = json.loads(shipped.read_text())
    changed["cells"][-1]["source"] = ["print('a new last cell')"]
    (tmp_path / shipped.name).write_text(json.dumps(changed))
    assert "differs" in page_drift(tmp_path / shipped.name, page)[0]
    assert page_drift(shipped, tmp_path / "missing.ipynb") == [f"{tmp_path / 'missing.ipynb'} is missing"]


@pytest.mark.parametrize("page", sorted((DOCS / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_notebook_page_shows_a_standard_error_block(page):
    """A browser draws standard error in red, and a reader takes it for a failure: a page shows none (the
    notebooks' first call hides the known messages that do not apply; progress lines are plain output)."""
    stderr_blocks = notebook_pages.stderr_blocks

    blocks = stderr_blocks(page)
    assert not blocks, (f"{page.name} shows {len(blocks)} standard-error block(s), first {blocks[0]!r}: hide a known "
                        "message that does not apply in loralab.model.known_messages, or print to stdout")


def test_a_standard_error_block_is_found(tmp_path):
    import json

    stderr_blocks = notebook_pages.stderr_blocks

    def cell(*outputs):
        return {"cell_type": "code", "source": ["print(1)"], "metadata": {}, "outputs": list(outputs)}

    plain = {"output_type": "stream", "name": "stdout", "text": ["[loralab] step 1/2 | loss 1.0\n"]}
    red = {"output_type": "stream", "name": "stderr", "text": ["W1207 something went wrong\n", "second line\n"]}
    page = tmp_path / "page.ipynb"
    page.write_text(json.dumps({"cells": [cell(plain), {"cell_type": "markdown", "source": []}], "metadata": {}}))
    assert stderr_blocks(page) == []
    page.write_text(json.dumps({"cells": [cell(plain), {"cell_type": "markdown", "source": []}, cell(plain, red)],
                                "metadata": {}}))
    assert stderr_blocks(page) == ["cell 2: W1207 something went wrong"]


def _section(page: str, heading: str) -> str:
    """The text under ``## heading`` up to the next ``## `` heading."""
    start = page.index(f"## {heading}\n")
    end = page.find("\n## ", start + 1)
    return page[start:] if end < 0 else page[start:end]


def test_params_reference_lists_every_field_of_every_notebook_schema():
    page = params_reference()
    for name, contract in CONTRACTS.items():
        section = _section(page, name)
        rows = re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.MULTILINE)
        assert sorted(rows) == sorted(contract.schema.model_fields), name
        assert rows[:len(contract.names)] == contract.names, f"{name}: the page follows the parameters cell's order"
        for field_name, field in contract.schema.model_fields.items():
            row = next(line for line in section.splitlines() if line.startswith(f"| `{field_name}` |"))
            described = " ".join((field.description or "").split()).replace("|", "\\|").replace("*", "\\*")
            described = described.replace("<", "&lt;").replace(">", "&gt;")
            assert described and described in row, f"{name}.{field_name}: help line missing"
            assert value_range(field).replace("<", "&lt;").replace(">", "&gt;") in row, f"{name}.{field_name}"
            default = default_of(field)
            assert f"`{default}`" in row or default.replace("|", "\\|") in row, f"{name}.{field_name}: default"


def test_params_reference_shows_ranges_and_types():
    section = _section(params_reference(), "01_qlora_finetune")
    row = next(line for line in section.splitlines() if line.startswith("| `lora_r` |"))
    assert "| `int` | `16` | &gt;= 1, &lt;= 1024 |" in row
    row = next(line for line in section.splitlines() if line.startswith("| `learning_rate` |"))
    assert "`2e-4`" in row and "&gt; 0, &lt;= 1" in row


def test_cli_reference_holds_every_command_help_as_the_parsers_print_it():
    page = cli_reference(main, COMMANDS)
    assert command_help(main, ["--help"]) in page
    for command in COMMANDS:
        assert f"## loralab {command}\n" in page
        assert command_help(main, [command, "--help"]) in page
    assert "--check" in _section(page, "loralab run")
    assert "--objective" in _section(page, "loralab plan")


def test_the_committed_reference_pages_are_what_the_code_generates():
    """The pages are committed so that links to them resolve on the repository's page; a schema or an option
    changed without writing them again fails here, in one line."""
    stale = [f"docs/reference/{name}" for name, text in reference_pages(main, COMMANDS).items()
             if not (DOCS / "reference" / name).is_file() or (DOCS / "reference" / name).read_text() != text]
    if stale:
        pytest.fail(f"{' and '.join(stale)} {'differ' if len(stale) > 1 else 'differs'} from what the code "
                    "generates: run `make docs-reference`", pytrace=False)


def test_cli_reference_does_not_depend_on_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    narrow = cli_reference(main, COMMANDS)
    monkeypatch.setenv("COLUMNS", "200")
    assert cli_reference(main, COMMANDS) == narrow


@pytest.mark.slow
def test_the_site_builds_in_strict_mode(tmp_path):
    """`make docs`'s build. Fails (does not skip) without the docs packages: a missing extra must show."""
    missing = [m for m in ("mkdocs", "material", "mkdocs_jupyter") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"the docs packages are not installed ({', '.join(missing)}): "
                    f"pip install -e '.[docs]' (make setup installs them)")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    site = tmp_path / "site"
    for page in ("index.html", "reference/params/index.html", "reference/cli/index.html",
                 "notebooks/01_qlora_finetune/index.html", "planner/index.html"):
        assert (site / page).is_file(), page
    params_html = (site / "reference/params/index.html").read_text()
    for contract in CONTRACTS.values():
        for field_name in contract.schema.model_fields:
            assert f"<code>{field_name}</code>" in params_html, field_name


def test_make_docs_notebooks_refuses_an_unknown_notebook_in_one_line(capsys):
    assert notebook_pages.main(["09"]) == 2
    assert capsys.readouterr().err.startswith("error: no notebook '09'")
