"""mkdocs hook: the pages that are generated at every build, so they cannot drift from what they describe.

    hooks: [docs/hooks/reference_pages.py]      # in mkdocs.yml

- ``reference/params.md``: every parameter of every notebook, from the schemas (``loralab.runs.reference_pages``)
- ``reference/cli.md``: ``loralab --help`` and each ``loralab COMMAND --help``, from the parsers
- ``index.md``: the README, its ``docs/`` links made relative to the site
The notebook pages are ``docs/notebooks/*.ipynb``: each notebook executed on its smoke params by
``make docs-notebooks`` (``loralab.runs.notebook_pages``), rendered by mkdocs-jupyter with their outputs.

loralab is imported from this checkout's ``src/`` (the reference pages need only pydantic, PyYAML and rich),
so the site builds in a docs-only environment as well as in the project's venv.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]


def index_page() -> str:
    """The README as the site's home page: links into docs/ become links between pages."""
    return (REPO / "README.md").read_text().replace("](docs/", "](")


@event_priority(100)  # before mkdocs-jupyter's on_files, which picks the notebooks up
def on_files(files: Files, config) -> Files:
    if str(REPO / "src") not in sys.path:  # mkdocs restores sys.path after loading a hook: add it here
        sys.path.insert(0, str(REPO / "src"))
    from loralab.cli import COMMANDS, main
    from loralab.runs.reference_pages import cli_reference, params_reference

    files.append(File.generated(config, "index.md", content=index_page()))
    files.append(File.generated(config, "reference/params.md", content=params_reference()))
    files.append(File.generated(config, "reference/cli.md", content=cli_reference(main, COMMANDS)))
    return files
