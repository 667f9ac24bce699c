"""Build step only: the wheel carries the repository's notebooks/ and params/ as loralab/shipped/.

Everything else (metadata, dependencies, package data) is in pyproject.toml. The notebooks and params
files stay at the repository root (Colab badges link to them); ``loralab.runs.shipped`` finds them
there in a checkout or an editable install, and in ``loralab/shipped/`` after ``pip install``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"notebooks": "*.ipynb", "params": "**/*.yaml"}  # folder at the repository root: files it ships


class BuildPyWithShipped(build_py):
    """build_py, then copy notebooks/*.ipynb and params/**/*.yaml into <build_lib>/loralab/shipped/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's own folders
            return
        for folder, pattern in SHIPPED.items():
            for source in sorted((ROOT / folder).glob(pattern)):
                target = Path(self.build_lib) / "loralab" / "shipped" / folder / source.relative_to(ROOT / folder)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)


setup(cmdclass={"build_py": BuildPyWithShipped})
