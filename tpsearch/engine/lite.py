"""A torch-only decoder stack for the kept dense copy: load a model without importing transformers.

Importing transformers' model and tokenizer classes takes 2-3 s of a cold `tpsearch query`
(torch itself 1.4-2 s) and building the model through `from_pretrained` more, while one
short query runs in milliseconds. For the dense bf16 copy of a 4-bit model that tpsearch
keeps (`quantization.save_dense`), and for a GGUF that tpsearch converted (loaded at bf16),
this module builds the same decoder stack from the checkpoint with plain torch modules, and
the tokenizer from the exact `tokenizers` backend transformers used (saved beside the weights
the first time transformers loads them).

The modules repeat transformers' Llama, Mistral, Qwen2 and Gemma 3 code operation for
operation (RMSNorms in float32, rotary embeddings, transformers' eager attention with its
causal/padding/sliding-window masks, which tpsearch asks transformers for on the CPU too,
gated MLPs), so vectors are bit-identical to transformers' (tests/test_lite.py compares them
on tiny checkpoints of each, padded batches, sliding windows, the prefix cache and weights
packed for oneDNN included; both packaged real models were checked the same way). Other
architectures, or configs with anything these modules do not implement (rope scaling, logit
soft-capping, MLP biases, ...), load through transformers as before.
`TPSEARCH_LITE=0` turns this module off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from tpsearch.engine.lite_stack import DecoderStack

# model_type -> whether the q/k/v and o projections carry biases (None: `attention_bias` says,
# for all four); Gemma 3's layer differs more (see `LiteConfig.gemma`)
FAMILIES: dict[str, tuple[bool, bool] | None] = {
    "llama": None,
    "mistral": (False, False),
    "qwen2": (True, False),
    "gemma3_text": (False, False),
}
SWITCH = "TPSEARCH_LITE"
TOKENIZER_FILE = "tokenizer-backend.json"  # the tokenizers backend exactly as transformers set it
TOKENIZER_INFO = "tokenizer-info.json"  # pad/eos/special ids the backend does not hold
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh"}


@dataclass(frozen=True)
class LiteConfig:
    """What the modules need from config.json."""

    model_type: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    qkv_bias: bool
    o_bias: bool
    vocab_size: int
    activation: str  # "silu" or "gelu_tanh"
    rope_thetas: tuple[float, ...]  # per layer
    windows: tuple[int | None, ...]  # per layer: a sliding attention window, or None
    scaling: float  # of the attention scores
    # Gemma 3: a scaled embedding, RMSNorm as x * (1 + w) in float32, norms after attention and
    # around the MLP, and RMSNorms of the queries and keys
    gemma: bool = False


def read_config(folder: Path) -> LiteConfig | None:
    """The folder's config as a `LiteConfig`, or None when these modules cannot run it."""
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or raw.get("model_type") not in FAMILIES:
        return None
    try:
        return _read(raw)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _read(raw: dict[str, Any]) -> LiteConfig | None:
    family = raw["model_type"]
    if raw.get("is_causal", True) is not True or "auto_map" in raw:
        return None  # bidirectional attention (transformers reads `is_causal`), custom code
    gemma = family == "gemma3_text"
    activation = _ACTIVATIONS.get(raw.get("hidden_activation" if gemma else "hidden_act", "silu"))
    if activation is None or raw.get("mlp_bias"):
        return None  # other activations, MLP biases: not implemented here
    layers = int(raw["num_hidden_layers"])
    heads, hidden = int(raw["num_attention_heads"]), int(raw["hidden_size"])
    head_dim = int(raw.get("head_dim") or hidden // heads)
    rope = raw.get("rope_parameters") or {}
    if raw.get("rope_scaling"):
        return None
    if gemma:
        if raw.get("attn_logit_softcapping") or raw.get("use_bidirectional_attention"):
            return None
        if raw.get("attention_bias"):
            return None
        kinds = list(raw["layer_types"])
        if len(kinds) != layers or not set(kinds) <= {"sliding_attention", "full_attention"}:
            return None
        if any(rope[kind].get("rope_type", "default") != "default" for kind in set(kinds)):
            return None
        thetas = tuple(float(rope[kind]["rope_theta"]) for kind in kinds)
        window = int(raw["sliding_window"])
        windows = tuple(window if kind == "sliding_attention" else None for kind in kinds)
        scaling = float(raw["query_pre_attn_scalar"]) ** -0.5
    else:
        windowed = raw.get("use_sliding_window") if family == "qwen2" else raw.get("sliding_window")
        if windowed or rope.get("rope_type", "default") != "default":
            return None  # sliding windows outside Gemma 3, scaled rotary embeddings
        theta = rope["rope_theta"] if "rope_theta" in rope else raw["rope_theta"]
        thetas, windows, scaling = (float(theta),) * layers, (None,) * layers, head_dim**-0.5
    biases = FAMILIES[family] or (bool(raw.get("attention_bias")),) * 2
    return LiteConfig(
        model_type=family,
        hidden_size=hidden,
        intermediate_size=int(raw["intermediate_size"]),
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
        head_dim=head_dim,
        rms_norm_eps=float(raw["rms_norm_eps"]),
        qkv_bias=biases[0],
        o_bias=biases[1],
        vocab_size=int(raw["vocab_size"]),
        activation=activation,
        rope_thetas=thetas,
        windows=windows,
        scaling=scaling,
        gemma=gemma,
    )


def ready(folder: Path) -> bool:
    """Whether `folder` (a dense copy) can load here without transformers; `TPSEARCH_LITE=0`
    says never (everything then loads through transformers, as before this module)."""
    if os.environ.get(SWITCH, "1").strip() == "0" or read_config(folder) is None:
        return False
    return _tokenizer_kept(folder) and (folder / "model.safetensors").is_file()


def _tokenizer_kept(folder: Path) -> bool:
    """Whether the tokenizer files are there, written by this version of tokenizers."""
    try:
        info = json.loads((folder / TOKENIZER_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(info, dict)
        and info.get("tokenizers") == _tokenizers_version()
        and (folder / TOKENIZER_FILE).is_file()
    )


# The tokenizer methods on the way from `tokenizer(...)` to the Rust backend: a class that
# overrides any of them (CodeLlama's infilling, remote code) does more than the backend does.
_ENCODE_PATH = ("__call__", "_call_one", "encode_plus", "batch_encode_plus", "_encode_plus")


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """Keep the transformers tokenizer's backend and ids beside a dense copy (once; best effort:
    a folder that cannot be written just keeps loading through transformers). Only a tokenizer
    that encodes with its backend alone is kept; the info file, written last, marks both done."""
    if _tokenizer_kept(folder) or read_config(folder) is None:
        return
    try:
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:
        return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    plain = all(
        getattr(type(tokenizer), name, None) is getattr(TokenizersBackend, name, None)
        for name in _ENCODE_PATH
    )
    if backend is None or not plain:
        return
    info = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "all_special_ids": [int(i) for i in tokenizer.all_special_ids],
        "split_special_tokens": bool(getattr(tokenizer, "split_special_tokens", False)),
        "tokenizers": _tokenizers_version(),
    }
    try:
        _write(folder / TOKENIZER_FILE, backend.to_str())
        _write(folder / TOKENIZER_INFO, json.dumps(info))
    except OSError:
        return


def _tokenizers_version() -> str:
    from importlib.metadata import version

    return version("tokenizers")


def _write(path: Path, text: str) -> None:
    """Write `path` whole or not at all: a temporary file of this process, then a rename (two
    processes saving at once each rename a complete file)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class LiteTokenizer:
    """The part of a transformers fast tokenizer that tpsearch calls, over its own backend."""

    is_fast = True

    def __init__(self, folder: Path) -> None:
        from tokenizers import Tokenizer

        self._backend = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self._backend.no_padding()
        self._backend.no_truncation()
        info = json.loads((folder / TOKENIZER_INFO).read_text(encoding="utf-8"))
        self.pad_token_id: int | None = info["pad_token_id"]
        self.eos_token_id: int | None = info["eos_token_id"]
        self.all_special_ids: list[int] = list(info["all_special_ids"])
        self.split_special_tokens = bool(info.get("split_special_tokens", False))

    def __call__(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
        split_special_tokens: bool | None = None,
    ) -> dict[str, Any]:
        """As transformers' call: `split_special_tokens` defaults to the tokenizer's own."""
        texts = [text] if isinstance(text, str) else list(text)
        if split_special_tokens is None:
            split_special_tokens = self.split_special_tokens
        before = self._backend.encode_special_tokens
        self._backend.encode_special_tokens = split_special_tokens
        try:
            encoded = self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self._backend.encode_special_tokens = before
        out: dict[str, Any] = {"input_ids": [e.ids for e in encoded]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encoded]
        if return_special_tokens_mask:
            out["special_tokens_mask"] = [e.special_tokens_mask for e in encoded]
        if isinstance(text, str):
            out = {key: value[0] for key, value in out.items()}
        return out

    def decode(self, ids: list[int]) -> str:
        return str(self._backend.decode(ids, skip_special_tokens=False))


def load(folder: Path, device: str) -> tuple[nn.Module, LiteTokenizer] | None:
    """The decoder stack (bf16, eval mode) and tokenizer of a `ready` dense copy; None when
    they cannot be read (the caller loads through transformers: slower, never wrong, and
    it saves the tokenizer again, its mark removed here)."""
    try:
        return _load(folder, device)
    except Exception as error:  # tokenizers raises a bare Exception on a torn JSON file
        logging.getLogger(__name__).info("loading %s through transformers: %s", folder, error)
        with contextlib.suppress(OSError):
            (folder / TOKENIZER_INFO).unlink()
        return None


def _load(folder: Path, device: str) -> tuple[nn.Module, LiteTokenizer]:
    import torch
    from safetensors.torch import load_file

    from tpsearch.engine.allocator import BULK_TOKENS

    config = read_config(folder)
    if config is None:
        raise ValueError(f"{folder} holds no model these modules run")
    model = _stack(config)
    state = load_file(str(folder / "model.safetensors"), device=device)
    state = {key.removeprefix("model."): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith("lm_head.")}
    if any(not value.is_floating_point() for value in state.values()):
        raise ValueError(f"{folder}: not all weights are floats")
    # bf16, as transformers casts them (a converted GGUF keeps F32 weights in float32)
    state = {key: value.to(torch.bfloat16) for key, value in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        wrong = [*missing, *unexpected][:3]
        raise ValueError(f"{folder}: weights do not match the layout ({wrong})")
    model.to(device=device)
    model.eval()
    model.requires_grad_(False)
    # weights handed to oneDNN (lite_stack.pack_weights) at the first bulk batch, not a query's
    model.pack_at = BULK_TOKENS if device == "cpu" else None
    return model, LiteTokenizer(folder)


def _stack(config: LiteConfig) -> DecoderStack:
    """Build the modules on the meta device: the weights are assigned by `load`."""
    import torch

    from tpsearch.engine.lite_stack import DecoderStack

    with torch.device("meta"):
        model = DecoderStack(config)
    steps = torch.arange(0, config.head_dim, 2, dtype=torch.float) / config.head_dim
    # computed as transformers does, in float32 on the CPU
    model.inv_freqs = {theta: 1.0 / (theta**steps) for theta in set(config.rope_thetas)}
    return model
