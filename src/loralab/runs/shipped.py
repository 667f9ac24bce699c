"""Where the notebooks and params files are: the checkout's own, else the copies the wheel ships.

    from loralab.runs.shipped import find_notebook, notebooks_dir, params_dir, working_folder
    notebooks_dir()                   # <repo>/notebooks in a checkout; <site-packages>/loralab/shipped/notebooks
    find_notebook("01")               # .../01_qlora_finetune.ipynb (a number, a name or the start of one)
    notebook_argument("01")           # the same; a path ("notebooks/01_qlora_finetune.ipynb") stays a path
    params_dir("01_qlora_finetune")   # .../params/01_qlora_finetune
    working_folder("runs")            # <repo>/runs when the current folder is inside a checkout, else ./runs

A checkout (and an editable install of one) reads the repository's own ``notebooks/`` and ``params/``;
a wheel carries copies of both in ``loralab/shipped/`` (setup.py copies them at build time), laid out
the same way, so a path such as ``params/01_qlora_finetune/smoke.yaml`` means the same file in both.
"""

from __future__ import annotations

from pathlib import Path

from loralab.params.contracts import contract_of
from loralab.params.errors import ParamsError

_HERE = Path(__file__).resolve()
PACKAGE_SHIPPED = _HERE.parents[1] / "shipped"  # where the wheel puts notebooks/ and params/


def checkout_root() -> Path | None:
    """The repository root when loralab runs from a git checkout (or an editable install), else None."""
    root = _HERE.parents[3]
    if _HERE.parents[2].name == "src" and (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


def shipped_root() -> Path:
    """The folder that holds ``notebooks/`` and ``params/``: the checkout, else the package's copies."""
    return checkout_root() or PACKAGE_SHIPPED


def notebooks_dir() -> Path:
    """The folder of the shipped notebooks."""
    return shipped_root() / "notebooks"


def params_dir(notebook: str | None = None) -> Path:
    """The shipped params folder, or the one of ``notebook`` (its stem, e.g. ``01_qlora_finetune``)."""
    folder = shipped_root() / "params"
    return folder / notebook if notebook else folder


def shipped_notebooks() -> list[Path]:
    """Every shipped notebook, in name order."""
    return sorted(notebooks_dir().glob("*.ipynb"))


def names_a_notebook(text: str) -> bool:
    """True when ``text`` is a bare name (``01``, ``01_qlora_finetune[.ipynb]``) and no file of that name is here."""
    path = Path(text)
    return bool(text) and "/" not in text and path.name == text and path.suffix in ("", ".ipynb") \
        and not path.exists()


def _matches(stem: str, name: str) -> bool:
    number, _, rest = stem.partition("_")
    if name.isdigit() and number.isdigit():
        return int(name) == int(number)
    return stem.startswith(name) or bool(rest) and rest.startswith(name)


def find_notebook(name: str) -> Path:
    """The shipped notebook ``name`` names: its number (``1``, ``01``), its name, or the start of its name.

    A ``ParamsError`` lists the notebooks when none or several match.
    """
    name = name.removesuffix(".ipynb")
    notebooks = shipped_notebooks()
    exact = [nb for nb in notebooks if nb.stem == name]
    found = exact or [nb for nb in notebooks if _matches(nb.stem, name)]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(nb.stem for nb in notebooks) or f"none in {notebooks_dir()}"
    if found:
        raise ParamsError(f"notebook {name!r} matches {', '.join(nb.stem for nb in found)}: give more of the name "
                          "(e.g. loralab run 01).")
    raise ParamsError(f"no notebook {name!r}; the notebooks are {listed} (give a number or name, e.g. loralab run "
                      "01, or a path to a .ipynb file).")


def notebook_argument(text: str) -> Path:
    """The notebook ``loralab run TEXT`` means: a path, else a shipped notebook's number or name.

    A bare ``NAME.ipynb`` that is not here means the shipped notebook of exactly that name, if there is
    one; otherwise it stays a path (whose check says it does not exist).
    """
    if names_a_notebook(text):
        if Path(text).suffix != ".ipynb":
            return find_notebook(text)
        if (notebooks_dir() / text).is_file():
            return notebooks_dir() / text
    return Path(text).resolve()


def find_params_file(path: str, notebook: Path) -> str:
    """``path`` as given when it exists here; else the shipped file it names, else ``path`` unchanged.

    A relative path that is not in the current folder is looked up in the shipped folder
    (``params/01_qlora_finetune/smoke.yaml``), then in the notebook's params folder
    (``smoke.yaml`` for notebook 01, or a renamed copy of it, means ``params/01_qlora_finetune/smoke.yaml``).
    """
    given = Path(path).expanduser()
    if given.exists() or given.is_absolute() or ".." in given.parts:
        return path
    contract = contract_of(notebook)  # a renamed copy of a shipped notebook finds that notebook's params
    for candidate in (shipped_root() / given, params_dir(contract.name if contract else notebook.stem) / given):
        if candidate.is_file():
            return str(candidate)
    return path


def working_folder(name: str) -> Path:
    """Where run or sweep folders go by default: ``<repo>/<name>`` inside a checkout, else ``./<name>``.

    Inside a checkout (the current folder is the repository or below it) runs keep going to the
    repository's ``runs/`` and sweeps to its ``sweeps/``, wherever in it the command runs.
    """
    here = Path.cwd().resolve()
    root = checkout_root()
    if root is not None and here.is_relative_to(root):
        return root / name
    return here / name
