"""Write each shipped notebook's generated cells: its contract (name in the metadata, parameters cell) and its
install cell for Colab and Kaggle.

    python -m loralab.runs.notebook_cells      # after changing a schema's default or help line, or pyproject.toml

    from loralab.runs.notebook_cells import write_contract_cells
    write_contract_cells(Path("notebooks/01_qlora_finetune.ipynb"), CONTRACTS["01_qlora_finetune"])

The parameters cell is rendered from the schema by ``loralab.params.contracts.parameters_cell``;
tests/test_contracts.py checks that every shipped notebook holds what this writes. The install cell is rendered from
pyproject.toml by ``loralab.runs.install_cell`` (the notebook's first code cell; one is inserted after the first
markdown cell of a notebook that has none); tests/test_hosted_install.py checks it. The install cell does nothing
off Colab and Kaggle, so the docs' notebook pages (``docs/notebooks/``, the notebooks as executed) get the same
cell without being executed again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from loralab.params.contracts import (
    CONTRACTS,
    METADATA_KEY,
    NotebookContract,
    parameters_cell,
    parameters_cell_index,
)
from loralab.runs.install_cell import (
    PYPROJECT,
    imports_unsloth,
    install_cell,
    install_cell_index,
    read_project,
)
from loralab.runs.shipped import notebooks_dir

INSTALL_CELL_ID = "install-loralab"  # the id of an install cell this inserts (nbformat 4.5 cells have ids)


def _source(text: str) -> list[str]:
    """A cell's source as nbformat stores it: lines with their newlines."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + lines[-1:]


def _write(notebook: Path, nb: dict, text: str) -> bool:
    """Write ``nb`` in nbformat's JSON layout (indent 1, UTF-8) if it differs from ``text``; True when it did."""
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        notebook.write_text(new)
    return new != text


def write_contract_cells(notebook: Path, contract: NotebookContract) -> bool:
    """Write the contract's name into the notebook's metadata and its parameters cell from the schema;
    True when the file changed. The file keeps its JSON layout (nbformat's: indent 1, UTF-8)."""
    text = notebook.read_text()
    nb = json.loads(text)
    nb.setdefault("metadata", {})[METADATA_KEY] = {"contract": contract.name}
    index = parameters_cell_index(nb["cells"])
    if index is not None:
        nb["cells"][index]["source"] = _source(parameters_cell(contract))
    return _write(notebook, nb, text)


def write_install_cell(notebook: Path, project: dict) -> bool:
    """Write the install cell generated from ``project`` (pyproject's ``[project]``) into the notebook (its first
    code cell, or a new cell after its first markdown cell); True when the file changed."""
    text = notebook.read_text()
    nb = json.loads(text)
    cells = nb["cells"]
    source = _source(install_cell(project, unsloth=imports_unsloth(cells)))
    index = install_cell_index(cells)
    if index is None:
        first_markdown = next(i for i, cell in enumerate(cells) if cell["cell_type"] == "markdown")
        cells.insert(first_markdown + 1, {"cell_type": "code", "execution_count": None, "id": INSTALL_CELL_ID,
                                          "metadata": {}, "outputs": [], "source": source})
    else:
        cells[index]["source"] = source
    return _write(notebook, nb, text)


def main(argv: list[str]) -> int:
    """Rewrite the shipped notebooks (or those in the folder ``argv[0]``), and the install cells of the docs'
    notebook pages next to the shipped notebooks."""
    folder = Path(argv[0]) if argv else notebooks_dir()
    project = read_project(PYPROJECT)
    pages = PYPROJECT.parent / "docs" / "notebooks"
    for contract in CONTRACTS.values():
        notebook = folder / f"{contract.name}.ipynb"
        changed = write_contract_cells(notebook, contract)
        changed = write_install_cell(notebook, project) or changed
        print(("rewrote " if changed else "unchanged ") + str(notebook))
        page = pages / notebook.name
        if not argv and page.is_file():
            print(("rewrote " if write_install_cell(page, project) else "unchanged ") + str(page))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
