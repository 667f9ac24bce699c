"""Architecture facts for common open models, so plans work offline from a name alone.

    from loralab.plan.architectures import get_architecture
    arch = get_architecture("unsloth/Llama-3.1-8B-Instruct-bnb-4bit")   # same shapes as meta-llama/Llama-3.1-8B
    arch.hidden, arch.layers, arch.total_params                          # 4096, 32, 8030261248

Every number is copied from the model's ``config.json`` on its Hugging Face page (``source``); the
total parameter count is the one the model card / safetensors index reports, and a test recomputes it
from the shapes and from a meta-device model built by ``transformers`` (no weights). A local folder
that holds a ``config.json`` works too. Unknown names raise ``ValueError`` listing the closest names.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Architecture:
    """Shapes of a decoder-only transformer (Llama-style blocks: attention + gated MLP)."""

    name: str  # canonical name, e.g. "llama-3.1-8b"
    family: str  # transformers model_type: llama, qwen2, mistral, gemma2, gemma3_text, phi3
    hidden: int  # hidden_size
    intermediate: int  # intermediate_size of the gated MLP
    layers: int  # num_hidden_layers
    heads: int  # num_attention_heads
    kv_heads: int  # num_key_value_heads (grouped-query attention)
    head_dim: int
    vocab: int  # vocab_size
    tied_embeddings: bool  # tie_word_embeddings: lm_head shares the embedding matrix
    total_params: int  # published parameter count (checked against the shapes by a test)
    source: str  # where the numbers come from
    qkv_bias: bool = False  # Qwen2 has biases on q, k, v
    fused_qkv: bool = False  # Phi-3: one qkv_proj instead of q/k/v
    fused_gate_up: bool = False  # Phi-3: one gate_up_proj instead of gate/up
    norms_per_layer: int = 2  # RMSNorms per block (Gemma 2/3 have 4)
    qk_norm: bool = False  # Gemma 3: per-head RMSNorm on q and k
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """PEFT module name -> (in_features, out_features) of one block's linear layers."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        attn = (
            {"qkv_proj": (h, q + 2 * kv)}
            if self.fused_qkv
            else {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv)}
        )
        attn["o_proj"] = (q, h)
        mlp = {"gate_up_proj": (h, 2 * i)} if self.fused_gate_up else {"gate_proj": (h, i), "up_proj": (h, i)}
        mlp["down_proj"] = (i, h)
        return {**attn, **mlp}

    def attention_modules(self) -> tuple[str, ...]:
        return ("qkv_proj", "o_proj") if self.fused_qkv else ("q_proj", "k_proj", "v_proj", "o_proj")

    @property
    def embedding_params(self) -> int:
        """Input embedding plus lm_head (counted once when tied)."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def linear_params_per_layer(self) -> int:
        return sum(i * o for i, o in self.linear_shapes().values())

    @property
    def linear_params(self) -> int:
        """Weights of all block linears: what bitsandbytes quantizes (embeddings and lm_head stay 16-bit)."""
        return self.layers * self.linear_params_per_layer

    @property
    def small_params(self) -> int:
        """Norm weights and biases: tiny, always kept in 16-bit."""
        per_layer = self.norms_per_layer * self.hidden + (2 * self.head_dim if self.qk_norm else 0)
        if self.qkv_bias:
            per_layer += self.q_dim + 2 * self.kv_dim
        return self.layers * per_layer + self.hidden  # + final norm

    def param_count(self) -> int:
        """Total parameters recomputed from the shapes (equals ``total_params`` when the table is right)."""
        return self.embedding_params + self.linear_params + self.small_params


def _hf(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


_LLAMA3 = {"family": "llama", "vocab": 128256, "head_dim": 128}
_QWEN25 = {"family": "qwen2", "qkv_bias": True, "head_dim": 128}

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture(
        "smollm2-135m",
        "llama",
        576,
        1536,
        30,
        9,
        3,
        64,
        49152,
        True,
        134_515_008,
        _hf("HuggingFaceTB/SmolLM2-135M-Instruct") + " (the embedded model)",
        aliases=("embedded/smollm2-135m-instruct", "huggingfacetb/smollm2-135m-instruct"),
    ),
    Architecture(
        "llama-3.2-1b",
        hidden=2048,
        intermediate=8192,
        layers=16,
        heads=32,
        kv_heads=8,
        tied_embeddings=True,
        total_params=1_235_814_400,
        source=_hf("meta-llama/Llama-3.2-1B"),
        **{**_LLAMA3, "head_dim": 64},
    ),
    Architecture(
        "llama-3.2-3b",
        hidden=3072,
        intermediate=8192,
        layers=28,
        heads=24,
        kv_heads=8,
        tied_embeddings=True,
        total_params=3_212_749_824,
        source=_hf("meta-llama/Llama-3.2-3B"),
        **_LLAMA3,
    ),
    Architecture(
        "llama-3.1-8b",
        hidden=4096,
        intermediate=14336,
        layers=32,
        heads=32,
        kv_heads=8,
        tied_embeddings=False,
        total_params=8_030_261_248,
        source=_hf("meta-llama/Llama-3.1-8B"),
        aliases=("llama-3-8b",),
        **_LLAMA3,
    ),
    Architecture(
        "llama-3.1-70b",
        hidden=8192,
        intermediate=28672,
        layers=80,
        heads=64,
        kv_heads=8,
        tied_embeddings=False,
        total_params=70_553_706_496,
        source=_hf("meta-llama/Llama-3.1-70B"),
        aliases=("llama-3-70b", "llama-3.3-70b"),
        **_LLAMA3,
    ),
    Architecture(
        "qwen2.5-0.5b",
        hidden=896,
        intermediate=4864,
        layers=24,
        heads=14,
        kv_heads=2,
        vocab=151936,
        tied_embeddings=True,
        total_params=494_032_768,
        source=_hf("Qwen/Qwen2.5-0.5B"),
        **{**_QWEN25, "head_dim": 64},
    ),
    Architecture(
        "qwen2.5-1.5b",
        hidden=1536,
        intermediate=8960,
        layers=28,
        heads=12,
        kv_heads=2,
        vocab=151936,
        tied_embeddings=True,
        total_params=1_543_714_304,
        source=_hf("Qwen/Qwen2.5-1.5B"),
        **_QWEN25,
    ),
    Architecture(
        "qwen2.5-3b",
        hidden=2048,
        intermediate=11008,
        layers=36,
        heads=16,
        kv_heads=2,
        vocab=151936,
        tied_embeddings=True,
        total_params=3_085_938_688,
        source=_hf("Qwen/Qwen2.5-3B"),
        **_QWEN25,
    ),
    Architecture(
        "qwen2.5-7b",
        hidden=3584,
        intermediate=18944,
        layers=28,
        heads=28,
        kv_heads=4,
        vocab=152064,
        tied_embeddings=False,
        total_params=7_615_616_512,
        source=_hf("Qwen/Qwen2.5-7B"),
        **_QWEN25,
    ),
    Architecture(
        "qwen2.5-14b",
        hidden=5120,
        intermediate=13824,
        layers=48,
        heads=40,
        kv_heads=8,
        vocab=152064,
        tied_embeddings=False,
        total_params=14_770_033_664,
        source=_hf("Qwen/Qwen2.5-14B"),
        **_QWEN25,
    ),
    Architecture(
        "qwen2.5-32b",
        hidden=5120,
        intermediate=27648,
        layers=64,
        heads=40,
        kv_heads=8,
        vocab=152064,
        tied_embeddings=False,
        total_params=32_763_876_352,
        source=_hf("Qwen/Qwen2.5-32B"),
        **_QWEN25,
    ),
    Architecture(
        "qwen2.5-72b",
        hidden=8192,
        intermediate=29568,
        layers=80,
        heads=64,
        kv_heads=8,
        vocab=152064,
        tied_embeddings=False,
        total_params=72_706_203_648,
        source=_hf("Qwen/Qwen2.5-72B"),
        **_QWEN25,
    ),
    Architecture(
        "mistral-7b-v0.3",
        "mistral",
        4096,
        14336,
        32,
        32,
        8,
        128,
        32768,
        False,
        7_248_023_552,
        _hf("mistralai/Mistral-7B-v0.3"),
        aliases=("mistral-7b",),
    ),
    Architecture(
        "gemma-2-2b",
        "gemma2",
        2304,
        9216,
        26,
        8,
        4,
        256,
        256000,
        True,
        2_614_341_888,
        _hf("google/gemma-2-2b"),
        norms_per_layer=4,
    ),
    Architecture(
        "gemma-2-9b",
        "gemma2",
        3584,
        14336,
        42,
        16,
        8,
        256,
        256000,
        True,
        9_241_705_984,
        _hf("google/gemma-2-9b"),
        norms_per_layer=4,
    ),
    Architecture(
        "gemma-2-27b",
        "gemma2",
        4608,
        36864,
        46,
        32,
        16,
        128,
        256000,
        True,
        27_227_128_320,
        _hf("google/gemma-2-27b"),
        norms_per_layer=4,
    ),
    Architecture(
        "gemma-3-1b",
        "gemma3_text",
        1152,
        6912,
        26,
        4,
        1,
        256,
        262144,
        True,
        999_885_952,
        _hf("google/gemma-3-1b-pt"),
        norms_per_layer=4,
        qk_norm=True,
    ),
    Architecture(
        "phi-3.5-mini",
        "phi3",
        3072,
        8192,
        32,
        32,
        32,
        96,
        32064,
        False,
        3_821_079_552,
        _hf("microsoft/Phi-3.5-mini-instruct"),
        fused_qkv=True,
        fused_gate_up=True,
        aliases=("phi-3-mini-4k", "phi-3-mini-128k", "phi-3-mini"),
    ),
)

# Suffixes and prefixes that do not change the shapes (instruct tunes, Unsloth's quantized uploads).
_STRIP_SUFFIXES = ("-unsloth-bnb-4bit", "-bnb-4bit", "-instruct", "-it", "-hf", "-pt", "-chat")
_BY_NAME: dict[str, Architecture] = {}
for _arch in ARCHITECTURES:
    for _n in (_arch.name, *_arch.aliases):
        _BY_NAME[_n] = _arch


def normalize_name(model: str) -> str:
    """``"unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit"`` -> ``"llama-3.1-8b"``."""
    name = model.strip().lower()
    if name in _BY_NAME:
        return name
    name = name.rsplit("/", 1)[-1]
    name = re.sub(r"^meta-", "", name)
    name = re.sub(r"-(instruct|it|chat)(?=-v\d)", "", name)  # mistral-7b-instruct-v0.3
    changed = True
    while changed:
        changed = False
        for suffix in _STRIP_SUFFIXES:
            if name.endswith(suffix):
                name, changed = name[: -len(suffix)], True
    name = re.sub(r"-(\d+k)$", "", name) if name.startswith("phi-3.5") else name
    return name


_FIX = "give a folder whose config.json save_pretrained wrote (or a hub id loralab knows)"
_REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def _read_config(path: Path) -> dict:
    """Parse ``config.json``; every way it can be wrong becomes a ``ValueError`` naming the file and a fix."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}): {_FIX}."
        ) from None
    except json.JSONDecodeError as error:
        where = f"line {error.lineno} column {error.colno}: {error.msg}"
        raise ValueError(f"{path} is not JSON ({where}): {_FIX}.") from None
    except RecursionError:
        raise ValueError(f"{path} is nested too deeply to be a model config: {_FIX}.") from None
    except OSError as error:
        raise ValueError(f"cannot read {path} ({error.strerror or error}): check its permissions.") from None
    if not isinstance(cfg, dict):  # bad file content, not a caller's type: ValueError, which the CLI reports
        kind = type(cfg).__name__
        raise ValueError(f"{path} holds a JSON {kind}, not an object of config fields: {_FIX}.")  # noqa: TRY004
    text = cfg.get("text_config")  # multimodal configs keep the language model's shapes here
    if text is not None and not isinstance(text, dict):
        raise ValueError(f"{path}: text_config is a JSON {type(text).__name__}, not an object: {_FIX}.")
    return text or cfg


def _field(path: Path, cfg: dict, key: str, *, required: bool = True) -> int | None:
    """A positive whole-number config entry (``None`` when optional and absent or null)."""
    value = cfg.get(key)
    if value is None:
        if not required:
            return None
        raise ValueError(
            f"{path} has no {key!r} entry (needs {', '.join(_REQUIRED)}); loralab plans decoder-only "
            f"transformer configs (Llama, Qwen2, Mistral, Gemma, Phi-3 style): {_FIX}."
        )
    ok = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not ok or not 1 <= value < 2**31:  # no real config is near 2**31
        raise ValueError(f"{path}: {key} must be a whole number from 1 to 2**31-1, got {value!r}: {_FIX}.")
    return int(value)


def _from_config_json(folder: Path) -> Architecture:
    path = folder / "config.json"
    return architecture_from_config(_read_config(path), folder.resolve().name or str(folder), path)


def architecture_from_config(cfg: dict, name: str, path: Path | str = "config") -> Architecture:
    """The shapes of a transformers config's fields (a loaded model's ``model.config.to_dict()`` or a
    config.json's); ``path`` names the source in errors."""
    path = Path(path)
    cfg = cfg.get("text_config") or cfg
    hidden, heads = _field(path, cfg, "hidden_size"), _field(path, cfg, "num_attention_heads")
    model_type = str(cfg.get("model_type") or "llama")
    arch = Architecture(
        name=name,
        family=model_type,
        hidden=hidden,
        intermediate=_field(path, cfg, "intermediate_size"),
        layers=_field(path, cfg, "num_hidden_layers"),
        heads=heads,
        kv_heads=_field(path, cfg, "num_key_value_heads", required=False) or heads,
        head_dim=_field(path, cfg, "head_dim", required=False) or max(1, hidden // heads),
        vocab=_field(path, cfg, "vocab_size"),
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        total_params=0,
        source=str(path),
        qkv_bias=model_type == "qwen2" or bool(cfg.get("attention_bias")),
        fused_qkv=model_type == "phi3",
        fused_gate_up=model_type == "phi3",
        norms_per_layer=4 if model_type.startswith(("gemma2", "gemma3")) else 2,
        qk_norm=model_type.startswith(("gemma3", "qwen3")),
    )
    return Architecture(**{**arch.__dict__, "total_params": arch.param_count()})


def known_names() -> list[str]:
    return sorted(_BY_NAME)


def _on_disk(folder: Path) -> str:
    """What ``folder`` is: ``"config"`` (holds config.json), ``"dir"``, ``"file"`` or ``"none"``."""
    try:
        if (folder / "config.json").is_file():
            return "config"
        return "dir" if folder.is_dir() else "file" if folder.exists() else "none"
    except (OSError, ValueError):  # a name too long for a path, or one with a NUL byte: not on disk
        return "none"


def get_architecture(model: str) -> Architecture:
    """Look a model up by hub id, Unsloth upload name, short name, or a local folder with config.json."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(
            f"model must be a hub id, a short name (e.g. llama-3.1-8b) or a folder, got {model!r}."
        )
    folder = Path(model).expanduser()
    on_disk = "none" if model.startswith("embedded/") else _on_disk(folder)
    if on_disk == "config":
        return _from_config_json(folder)
    key = normalize_name(model)
    if key in _BY_NAME:
        return _BY_NAME[key]
    if on_disk == "dir":
        raise ValueError(
            f"folder {folder} has no config.json: give the folder save_pretrained wrote (it holds "
            "config.json next to the weights), or a hub id such as meta-llama/Llama-3.1-8B."
        )
    if on_disk == "file":
        raise ValueError(f"{folder} is a file: give the folder that holds config.json ({folder.parent}).")
    if model.startswith(("/", "./", "../", "~")):
        raise ValueError(f"folder {folder} does not exist: check the path, or give a hub id instead.")
    close = difflib.get_close_matches(key, known_names(), n=5, cutoff=0.5)
    hint = f" Closest known names: {', '.join(close)}." if close else ""
    shown = model if len(model) <= 120 else model[:120] + "..."
    raise ValueError(
        f"Unknown model {shown!r}: loralab has no architecture facts for it.{hint} Pass a local folder "
        f"that holds the model's config.json instead, or pick one of: {', '.join(a.name for a in ARCHITECTURES)}."
    )
