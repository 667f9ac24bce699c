"""Regenerate the embedded JSON-answers dataset shipped in src/loralab/data/.

    python scripts/make_dataset.py          # deterministic: rewrites the same files
"""

import json

from loralab.data.json_answers import build_splits, data_file

for split, rows in build_splits(seed=0).items():
    path = data_file(split)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{path}: {len(rows)} rows")
