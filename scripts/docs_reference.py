"""Write the docs' reference pages, docs/reference/params.md and docs/reference/cli.md, from the code.

    python scripts/docs_reference.py          # or: make docs-reference

Run it after changing a notebook's schema (loralab.params) or a command's options; tests/test_docs.py fails
while the committed pages differ from what loralab.runs.reference_pages generates. Prints the pages it changed.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "docs" / "reference"


def main() -> int:
    sys.path.insert(0, str(REPO / "src"))  # this checkout's loralab, installed or not
    from loralab.cli import COMMANDS
    from loralab.cli import main as cli_main
    from loralab.runs.reference_pages import reference_pages

    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, text in reference_pages(cli_main, COMMANDS).items():
        page = FOLDER / name
        if not page.is_file() or page.read_text() != text:
            page.write_text(text)
            print(f"wrote {page.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
