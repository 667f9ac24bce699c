"""Write each shipped notebook's contract into it: the contract's name in its metadata, its parameters cell.

    python -m loralab.runs.notebook_cells      # after changing a schema's default or help line

    from loralab.runs.notebook_cells import write_contract_cells
    write_contract_cells(Path("notebooks/01_qlora_finetune.ipynb"), CONTRACTS["01_qlora_finetune"])

The cell is rendered from the schema by ``loralab.params.contracts.parameters_cell``; tests/test_contracts.py
checks that every shipped notebook holds what this writes.
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
from loralab.runs.shipped import notebooks_dir


def write_contract_cells(notebook: Path, contract: NotebookContract) -> bool:
    """Write the contract's name into the notebook's metadata and its parameters cell from the schema;
    True when the file changed. The file keeps its JSON layout (nbformat's: indent 1, UTF-8)."""
    text = notebook.read_text()
    nb = json.loads(text)
    nb.setdefault("metadata", {})[METADATA_KEY] = {"contract": contract.name}
    index = parameters_cell_index(nb["cells"])
    if index is not None:
        lines = parameters_cell(contract).split("\n")
        nb["cells"][index]["source"] = [line + "\n" for line in lines[:-1]] + lines[-1:]
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        notebook.write_text(new)
    return new != text


def main(argv: list[str]) -> int:
    """Rewrite the shipped notebooks (or those in the folder ``argv[0]``)."""
    folder = Path(argv[0]) if argv else notebooks_dir()
    for contract in CONTRACTS.values():
        notebook = folder / f"{contract.name}.ipynb"
        print(("rewrote " if write_contract_cells(notebook, contract) else "unchanged ") + str(notebook))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
