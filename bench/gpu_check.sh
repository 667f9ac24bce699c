#!/usr/bin/env bash
# GPU check (bench/gpu_check.py): install the wheels it is given, then train QLoRA and 16-bit LoRA steps
# on a random-weight Llama-3.1-8B-shaped model through loralab's path and plain transformers + PEFT + TRL.
#
#   bash bench/gpu_check.sh --download build/gpu-wheels [--python-version 3.12]   # here (PyPI): wheels in parts
#   bash bench/gpu_check.sh --wheels build/gpu-wheels/part1 --install-only      # GPU machine, one call per part
#   bash bench/gpu_check.sh --wheels build/gpu-wheels/part3 --out "$OUT/gpu_check.json"   # last part: install, run
#   bash bench/gpu_check.sh --shape tiny --out /tmp/gpu_check.json              # CPU, tiny shape (make test)
#
# --wheels DIR (repeatable): `pip install --no-deps --no-index` every *.whl in DIR whose distribution is not
# installed yet (an installed one, at any version, is left alone: the machine's torch stack stays as it is).
# An empty or missing folder installs nothing. --install-only stops after the install and lists what is installed.
# --download DIR: `pip download --no-deps` the packages a bare CUDA machine (torch, transformers, peft,
# accelerate) lacks, at this venv's versions, and split them into DIR/part1, part2, ... of at most 56 MiB
# each (a device call carries at most 64 MiB). Everything else goes to bench/gpu_check.py (--help there).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY="$(command -v python3 || command -v python)"; fi

# What a bare CUDA machine with torch + transformers + peft + accelerate lacks for every path: bitsandbytes,
# TRL and datasets (with datasets' own dependencies), Unsloth and unsloth_zoo (with theirs).
DOWNLOAD_PACKAGES="bitsandbytes trl datasets unsloth unsloth_zoo pyarrow dill multiprocess xxhash pandas
tyro docstring_parser typeguard shtab msgspec cut_cross_entropy hf_transfer torchao sentencepiece protobuf
json5 structlog nest_asyncio einops diffusers pydantic pydantic_core annotated_types typing_inspection"
PART_MIB=56

wheels=()
install_only=0
download=""
pyversion=""
rest=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheels) wheels+=("$2"); shift 2 ;;
    --wheels=*) wheels+=("${1#*=}"); shift ;;
    --install-only) install_only=1; shift ;;
    --download) download="$2"; shift 2 ;;
    --python-version) pyversion="$2"; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done

if [[ -n "$download" ]]; then
  # Pin each package to this venv's version where it has one (the versions make setup tested).
  pins=$("$PY" - $DOWNLOAD_PACKAGES <<'EOF'
import importlib.metadata as m, sys
out = []
for name in sys.argv[1:]:
    try:
        out.append(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        out.append(name)
print(" ".join(out))
EOF
)
  pyversion="${pyversion:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}"
  mkdir -p "$download/all"
  # shellcheck disable=SC2086
  "$PY" -m pip download --no-deps --only-binary=:all: --dest "$download/all" --python-version "$pyversion" \
    --implementation cp $(for v in 2014 _2_17 _2_24 _2_27 _2_28; do echo "--platform manylinux${v}_x86_64"; done) \
    $pins  # pip matches --platform tags exactly: each manylinux level a wheel may carry is listed
  "$PY" bench/gpu_check.py --split-wheels "$download/all" --part-mib "$PART_MIB"
  exit 0
fi

installed_dist() {  # exit 0 when the distribution of a wheel file is installed (any version)
  "$PY" - "$1" <<'EOF'
import importlib.metadata as m, os, sys
name = os.path.basename(sys.argv[1]).split("-")[0]
try:
    m.version(name)
except m.PackageNotFoundError:
    sys.exit(1)
EOF
}

for dir in "${wheels[@]+"${wheels[@]}"}"; do
  shopt -s nullglob
  files=("$dir"/*.whl)
  shopt -u nullglob
  if [[ ${#files[@]} -eq 0 ]]; then
    echo "wheels: none in $dir, nothing to install"
    continue
  fi
  for wheel in "${files[@]}"; do
    if installed_dist "$wheel"; then
      echo "wheels: $(basename "$wheel"): already installed, skipped"
    elif "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-index "$wheel"; then
      echo "wheels: $(basename "$wheel"): installed"
    else
      echo "wheels: $(basename "$wheel"): FAILED to install (wrong Python or platform?), going on"
    fi
  done
done

export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # loralab from this checkout, installed or not
if [[ $install_only -eq 1 ]]; then
  exec "$PY" bench/gpu_check.py --preflight
fi
exec "$PY" bench/gpu_check.py "${rest[@]+"${rest[@]}"}"
