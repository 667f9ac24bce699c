"""Print the requirements of pyproject extras, one per line, for installs that need --no-deps.

    python scripts/extra_requirements.py unsloth embedded
"""

import sys
import tomllib
from pathlib import Path

extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]
for name in sys.argv[1:]:
    print("\n".join(extras[name]))
