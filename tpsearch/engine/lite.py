"""A torch-only decoder stack for the kept dense copy: load a model without importing transformers.

Importing transformers' model and tokenizer classes takes 2-3 s of a cold `tpsearch query`
(torch itself 1.4-2 s) and building the model through `from_pretrained` more, while one
short query runs in milliseconds. For the dense bf16 copy of a 4-bit model that tpsearch
keeps (`quantization.save_dense`), this module builds the same decoder stack from the
checkpoint with plain torch modules, and the tokenizer from the exact `tokenizers` backend
transformers used (saved beside the copy the first time transformers loads it).

The modules repeat transformers' Llama, Mistral, Qwen2 and Gemma 3 code operation for
operation (RMSNorms in float32, rotary embeddings, scaled-dot-product attention with the same
causal/padding/sliding-window mask choices, gated MLPs), so vectors are bit-identical to
transformers' (tests/test_lite.py compares them on tiny checkpoints of each, padded batches,
sliding windows and the prefix cache included; both packaged real models were checked the
same way). Other architectures, or configs with anything these modules do not implement
(rope scaling, logit soft-capping, MLP biases, ...), load through transformers as before.
`TPSEARCH_LITE=0` turns this module off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

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
    gemma = family == "gemma3_text"
    activation = _ACTIVATIONS.get(raw.get("hidden_activation" if gemma else "hidden_act", "silu"))
    if activation is None or raw.get("mlp_bias") or raw.get("pretraining_tp", 1) != 1:
        return None  # other activations, MLP biases, split matmuls: not implemented here
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
    return (
        os.environ.get(SWITCH, "1").strip() != "0"
        and read_config(folder) is not None
        and (folder / TOKENIZER_FILE).is_file()
        and (folder / TOKENIZER_INFO).is_file()
        and (folder / "model.safetensors").is_file()
    )


def save_tokenizer(tokenizer: Any, folder: Path) -> None:
    """Keep the transformers tokenizer's backend and ids beside a dense copy (once; best effort:
    a folder that cannot be written just keeps loading through transformers)."""
    if (folder / TOKENIZER_INFO).is_file() or read_config(folder) is None:
        return
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return
    info = {
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "all_special_ids": [int(i) for i in tokenizer.all_special_ids],
    }
    try:
        _write(folder / TOKENIZER_FILE, backend.to_str())
        _write(folder / TOKENIZER_INFO, json.dumps(info))
    except OSError:
        return


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


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

    def __call__(
        self,
        text: str | list[str],
        add_special_tokens: bool = True,
        return_offsets_mapping: bool = False,
        return_special_tokens_mask: bool = False,
        split_special_tokens: bool = False,
    ) -> dict[str, Any]:
        texts = [text] if isinstance(text, str) else list(text)
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


def load(folder: Path, device: str) -> tuple[nn.Module, LiteTokenizer]:
    """The decoder stack (bf16, eval mode) and tokenizer of a `ready` dense copy."""
    import torch
    from safetensors.torch import load_file

    config = read_config(folder)
    if config is None:
        raise ValueError(f"{folder} holds no model these modules run")
    model = _stack(config)
    state = load_file(str(folder / "model.safetensors"), device=device)
    state = {key.removeprefix("model."): value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith("lm_head.")}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(
            f"{folder}: weights do not match the layout ({[*missing, *unexpected][:3]})"
        )
    model.to(device=device)
    model.eval()
    model.requires_grad_(False)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    return model, LiteTokenizer(folder)


def _stack(config: LiteConfig) -> nn.Module:
    """Build the modules on the meta device: the weights are assigned by `load`."""
    import torch

    from tpsearch.engine.lite_stack import DecoderStack

    with torch.device("meta"):
        model = DecoderStack(config)
    steps = torch.arange(0, config.head_dim, 2, dtype=torch.float) / config.head_dim
    # computed as transformers does, in float32 on the CPU
    model.inv_freqs = {theta: 1.0 / (theta**steps) for theta in set(config.rope_thetas)}
    return model
