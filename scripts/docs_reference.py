"""Write the docs' reference pages, docs/reference/params.md and docs/reference/cli.md, from the code.

    python scripts/docs_reference.py          # or: make docs-reference

The parameters page holds, per notebook (``loralab.params.contracts.CONTRACTS``) and per group of its
parameters cell, each field's type, default (written as the parameters cell writes it), range (the field's
ge/le/gt/lt) and help line (its description); the CLI page is ``loralab --help`` and each ``loralab COMMAND
--help``, run in this process at a fixed width of 100 columns, so the text does not depend on the terminal.
The pages are committed so that their links resolve on the repository's page as well as in the site;
tests/test_docs.py fails while they differ from what this script generates. Prints the pages it changed.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic.fields import FieldInfo

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "docs" / "reference"
sys.path.insert(0, str(REPO / "src"))  # this checkout's loralab, installed or not

from loralab.params.contracts import CONTRACTS, NotebookContract, literal

HELP_WIDTH = "100"  # COLUMNS for argparse while the help is captured
BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _cell(text: str) -> str:
    """Text for a Markdown table cell: line breaks flattened; pipes, angle brackets and stars escaped."""
    text = " ".join(text.split())
    for char, escaped in (("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    return text


def _code(text: str) -> str:
    """A table cell in a code span; a value holding a pipe or a backtick is written plain (escaped)."""
    return f"`{text}`" if "|" not in text and "`" not in text else _cell(text)


def type_name(annotation: typing.Any) -> str:
    """``int``, ``list[str] | None``, ``Literal['none', 'packed']``: the annotation as a reader writes it."""
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def value_range(field: FieldInfo) -> str:
    """The field's bounds, e.g. ``>= 1, <= 1024``; empty without any."""
    parts = []
    for item in field.metadata:
        for attr, sign in BOUNDS:
            bound = getattr(item, attr, None)
            if bound is not None:
                parts.append(f"{sign} {literal(bound)}")
    return ", ".join(parts)


def default_of(field: FieldInfo) -> str:
    """The default as the parameters cell writes it (``2e-4``, ``"all-linear"``, ``None``)."""
    return literal(field.default_factory() if field.default_factory else field.default)


def groups_of(contract: NotebookContract) -> list[tuple[str, list[str]]]:
    """The parameters cell's groups; schema fields the cell does not show, if any, come last."""
    if contract.knobs:  # the parameters cell's knobs, then every other field in its group
        shown = contract.names
        groups = [("in the parameters cell", shown)] + [
            (heading or "first knobs", [n for n in names if n not in shown]) for heading, names in contract.cell]
        groups = [(heading, names) for heading, names in groups if names]
    else:
        groups = [(heading or "first knobs", list(names)) for heading, names in contract.cell]
    rest = [name for name in contract.schema.model_fields if name not in contract.all_names]
    return groups + ([("not in the parameters cell", rest)] if rest else [])


def params_reference() -> str:
    """The parameters page: per notebook (contract), per group, one table row per parameter."""
    lines = [
        "# Notebook parameters",
        "",
        "Generated from the code (`make docs-reference`; a test fails when this page differs from the code):",
        "each notebook's schema in `loralab.params` holds the default and the help line of every parameter,",
        "and its parameters cell is rendered from it, in the groups below. Parameters are validated before",
        "any model loads: unknown names (with the nearest valid one), wrong types and values outside the",
        "range are refused.",
        "",
    ]
    for name, contract in CONTRACTS.items():
        schema = contract.schema
        lines += [f"## {name}", "",
                  f"`notebooks/{name}.ipynb`, schema `{schema.__module__}.{schema.__name__}`"
                  + (f"; the run folder comes from `{contract.folder_param}`" if contract.folder_param else "")
                  + (f"; results in `{contract.results_file}`" if contract.results_file else "") + ".", ""]
        fields = schema.model_fields
        for heading, names in groups_of(contract):
            lines += [f"### {name}: {heading}", "",
                      "| parameter | type | default | range | what it does |",
                      "| --- | --- | --- | --- | --- |"]
            for param in names:
                field = fields[param]
                lines.append(f"| `{param}` | {_code(type_name(field.annotation))} | {_code(default_of(field))} | "
                             f"{_cell(value_range(field))} | {_cell(field.description or '')} |")
            lines.append("")
    return "\n".join(lines)


def command_help(main: Callable[[list[str]], int], argv: list[str]) -> str:
    """What ``loralab ARGV`` prints (``main`` is ``loralab.cli.main``), captured in this process at a fixed width."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(argv)
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before
    if code != 0:
        raise RuntimeError(f"loralab {' '.join(argv)} exited with {code}: {out.getvalue()}")
    return out.getvalue().rstrip()


def cli_reference(main: Callable[[list[str]], int], commands: Mapping[str, tuple[str, str]]) -> str:
    """The command-line page: ``loralab --help``, then each command's ``--help`` (``loralab.cli``'s
    ``main`` and ``COMMANDS``)."""
    lines = ["# The command line", "",
             "Generated from the parsers (`make docs-reference` runs each `--help`; a test fails when this",
             "page differs from them). A mistake prints one line, `error: ...`, and exits with 2; `--debug`",
             "(anywhere) shows the traceback instead.", "",
             "## loralab", "", "```text", command_help(main, ["--help"]), "```", ""]
    for command, (_, line) in commands.items():
        lines += [f"## loralab {command}", "", line[:1].upper() + line[1:] + ".", "",
                  "```text", command_help(main, [command, "--help"]), "```", ""]
    return "\n".join(lines)


def reference_pages(main: Callable[[list[str]], int], commands: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """The files of ``docs/reference/`` as the code generates them now: file name -> Markdown."""
    return {"params.md": params_reference(), "cli.md": cli_reference(main, commands)}


def main() -> int:
    from loralab.cli import COMMANDS
    from loralab.cli import main as cli_main

    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, text in reference_pages(cli_main, COMMANDS).items():
        page = FOLDER / name
        if not page.is_file() or page.read_text() != text:
            page.write_text(text)
            print(f"wrote {page.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
