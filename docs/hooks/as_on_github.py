"""mkdocs hook: the site reads the pages as the repository's page shows them.

    hooks: [docs/hooks/as_on_github.py]      # in mkdocs.yml

- The home page, ``index.md``, is the README with its ``docs/`` links made relative to the site.
- Heading anchors follow GitHub's rule (lowercase, punctuation but ``-`` and ``_`` dropped, each space a
  ``-``; ``pymdownx.slugs``), so a ``page.md#anchor`` link works in both places: ``mkdocs build --strict``
  checks it here, ``tests/test_doc_links.py`` on the repository.

Every other page is a file in ``docs/``: the reference pages ``reference/params.md`` and ``reference/cli.md``
are committed there, written from the code by ``make docs-reference`` (``scripts/docs_reference.py``; a
test fails when they differ from it). The notebook pages are ``docs/notebooks/*.ipynb``: each notebook
executed on its smoke params by ``make docs-notebooks`` (``scripts/notebook_pages.py``), rendered by
mkdocs-jupyter with their outputs. The build imports nothing from loralab.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files
from pymdownx.slugs import slugify

REPO = Path(__file__).resolve().parents[2]


def index_page() -> str:
    """The README as the site's home page: links into docs/ become links between pages."""
    return (REPO / "README.md").read_text().replace("](docs/", "](")


def on_config(config):
    config.mdx_configs.setdefault("toc", {})["slugify"] = slugify(case="lower")
    return config


def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "index.md", content=index_page()))
    return files
