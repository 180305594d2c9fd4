"""The torch modules of `lite.py`: transformers' Llama decoder stack, operation for operation.

Imported only when a dense copy loads (it imports torch). Each module names its weights as
transformers does, so a transformers checkpoint loads with `load_state_dict`; `forward` takes
the arguments tpsearch passes a transformers base model (`TPEncoder._run`, `HeadCache`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

from tpsearch.engine.lite import LiteConfig


class Linear(nn.Linear):
    def reset_parameters(self) -> None:
        """Nothing to initialise: `lite.load` assigns every weight (and initialising on the
        meta device imports torch._dynamo, 1.4 s)."""


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        """As `Linear.reset_parameters`."""


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        dtype = hidden.dtype
        hidden = hidden.to(torch.float32)
        variance = hidden.pow(2).mean(-1, keepdim=True)
        hidden = hidden * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def repeat_kv(states: torch.Tensor, times: int) -> torch.Tensor:
    if times == 1:
        return states
    batch, heads, length, dim = states.shape
    expanded = states[:, :, None, :, :].expand(batch, heads, times, length, dim)
    return expanded.reshape(batch, heads * times, length, dim)


class Attention(nn.Module):
    def __init__(self, config: LiteConfig, index: int) -> None:
        super().__init__()
        self.index = index
        self.head_dim = config.head_dim
        self.groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = config.head_dim**-0.5
        heads, kv, hidden = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.hidden_size,
        )
        bias = config.qkv_bias
        self.q_proj = Linear(hidden, heads * self.head_dim, bias=bias)
        self.k_proj = Linear(hidden, kv * self.head_dim, bias=bias)
        self.v_proj = Linear(hidden, kv * self.head_dim, bias=bias)
        self.o_proj = Linear(heads * self.head_dim, hidden, bias=config.o_bias)

    def forward(
        self,
        hidden: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: LiteCache | None,
    ) -> torch.Tensor:
        shape = hidden.shape[:-1]
        split = (*shape, -1, self.head_dim)
        query = self.q_proj(hidden).view(split).transpose(1, 2)
        key = self.k_proj(hidden).view(split).transpose(1, 2)
        value = self.v_proj(hidden).view(split).transpose(1, 2)
        cos, sin = rotary[0].unsqueeze(1), rotary[1].unsqueeze(1)
        query = (query * cos) + (rotate_half(query) * sin)
        key = (key * cos) + (rotate_half(key) * sin)
        if cache is not None:
            key, value = cache.update(key, value, self.index)
        extra: dict[str, Any] = {}
        length = query.shape[2]
        if self.groups > 1:
            if mask is None and key.shape[-1] == value.shape[-1] <= 256:
                extra["enable_gqa"] = True
            else:
                key, value = repeat_kv(key, self.groups), repeat_kv(value, self.groups)
        causal = length > 1 and mask is None
        out = functional.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=mask,
            dropout_p=0.0,
            scale=self.scaling,
            is_causal=causal,
            **extra,
        )
        out = out.reshape(out.shape[0], -1, length, value.shape[-1]).transpose(1, 2)
        return self.o_proj(out.contiguous().reshape(*shape, -1).contiguous())


class MLP(nn.Module):
    def __init__(self, config: LiteConfig) -> None:
        super().__init__()
        hidden, inner = config.hidden_size, config.intermediate_size
        self.gate_proj = Linear(hidden, inner, bias=False)
        self.up_proj = Linear(hidden, inner, bias=False)
        self.down_proj = Linear(inner, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(functional.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, config: LiteConfig, index: int) -> None:
        super().__init__()
        self.self_attn = Attention(config, index)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(
        self,
        hidden: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
        cache: LiteCache | None,
    ) -> torch.Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden), rotary, mask, cache)
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class LiteCache:
    """Keys and values per layer, appended to as a forward pass runs (DynamicCache's part
    that the template head cache uses)."""

    def __init__(self) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(
        self, key: torch.Tensor, value: torch.Tensor, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if index < len(self.layers):
            old_key, old_value = self.layers[index]
            key = torch.cat([old_key, key], dim=-2)
            value = torch.cat([old_value, value], dim=-2)
            self.layers[index] = (key, value)
        else:
            self.layers.append((key, value))
        return key, value

    def get_seq_length(self) -> int:
        return int(self.layers[0][0].shape[-2]) if self.layers else 0

    def batch_repeat_interleave(self, times: int) -> None:
        self.layers = [
            (k.repeat_interleave(times, dim=0), v.repeat_interleave(times, dim=0))
            for k, v in self.layers
        ]


class DecoderStack(nn.Module):
    """Embeddings, decoder layers and the final norm: what `AutoModel` gives, for these
    families; called as tpsearch calls a transformers base model."""

    def __init__(self, config: LiteConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Layer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.inv_freq: torch.Tensor = torch.empty(0)

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def get_memory_footprint(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())

    def new_cache(self) -> LiteCache:
        return LiteCache()

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        use_cache: bool = False,
        past_key_values: LiteCache | None = None,
    ) -> torch.Tensor:
        hidden = inputs_embeds
        cache = past_key_values if use_cache else None
        past = cache.get_seq_length() if cache is not None else 0
        mask = _mask(attention_mask, hidden.shape[1], past)
        freqs = position_ids[..., None].float() * self.inv_freq.to(hidden.device)
        angles = torch.cat((freqs, freqs), dim=-1)
        rotary = (angles.cos().to(hidden.dtype), angles.sin().to(hidden.dtype))
        for layer in self.layers:
            hidden = layer(hidden, rotary, mask, cache)
        return self.norm(hidden)


def _mask(attention: torch.Tensor, length: int, past: int) -> torch.Tensor | None:
    """None (causal attention) when nothing is padded and nothing is cached, as
    transformers' SDPA path chooses; else a boolean (B, 1, T, past + T) mask."""
    if past == 0 and bool(attention.all()):
        return None
    columns = torch.arange(past + length, device=attention.device)
    rows = torch.arange(length, device=attention.device) + past
    causal = columns[None, :] <= rows[:, None]  # (T, past + T)
    return (causal[None, None] & attention.bool()[:, None, None, :]).contiguous()
