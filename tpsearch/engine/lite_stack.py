"""The torch modules of `lite.py`: transformers' Llama-family and Gemma 3 decoder stacks,
operation for operation.

Imported only when a dense copy loads (it imports torch). Each module names its weights as
transformers does, so a transformers checkpoint loads with `load_state_dict`; `forward` takes
the arguments tpsearch passes a transformers base model (`TPEncoder._run`, `HeadCache`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from tpsearch.engine.lite import LiteConfig

# Attention scores held at once (float32, 128 MiB): longer texts attend a few batch rows at a
# time, each row's numbers the same (32 rows of 512 tokens with 9 heads would hold 302 MB)
SCORES_AT_ONCE = 1 << 25


class Linear(nn.Linear):
    """`nn.Linear`, whose weight `pack_weights` may hand to oneDNN in its blocked layout."""

    packed: torch.Tensor | None = None

    def reset_parameters(self) -> None:
        """Nothing to initialise: `lite.load` assigns every weight (and initialising on the
        meta device imports torch._dynamo, 1.4 s)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight  # read before `packed`: pack_weights sets that one first
        packed = self.packed
        if packed is None:
            return functional.linear(x, weight, self.bias)
        return _packed_linear(x, packed, self.bias)


def _packed_linear(
    x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def pack_weights(model: nn.Module, rows: int = 1) -> bool:
    """Give every `Linear` of a bf16 stack on the CPU its weight in oneDNN's blocked layout,
    reordered once here instead of in every call: 3-9% less time per batch for the packaged
    models (the matmuls alone 6-19% faster at their shapes, M = 1 to 1,856), the same bits.
    It costs ~0.2 s and, as the plain weights are read from the checkpoint's file mapping,
    ~200 MB more resident memory for SmolLM2-135M; so `DecoderStack` does it at its first
    bulk batch (of `rows` token rows), never for a query.

    Only where it gives exactly `functional.linear`'s results on this machine and torch: each
    distinct weight shape is tried first on 1, 37 and `rows` random rows (oneDNN may choose
    its kernel by the row count), and nothing is packed (False) if one differs or oneDNN is
    missing. A packed weight replaces the plain one, module by module, which stays as a meta
    tensor of its shape (what the footprint and parameter counts read)."""
    linears = [m for m in model.modules() if isinstance(m, Linear)]
    if not linears or not torch.backends.mkldnn.is_available():
        return False
    first = linears[0].weight
    if first.device.type != "cpu" or first.dtype != torch.bfloat16:
        return False
    shapes = {(*m.weight.shape, m.bias is not None): m for m in linears}
    generator = torch.Generator().manual_seed(0)
    try:
        for module in shapes.values():
            w, bias = module.weight.detach(), module.bias
            trial = torch.ops.mkldnn._reorder_linear_weight(w)
            for count in sorted({1, 37, rows}):
                x = torch.randn(count, w.shape[1], generator=generator).to(w.dtype)
                if not torch.equal(_packed_linear(x, trial, bias), functional.linear(x, w, bias)):
                    return False
        for module in linears:
            plain = module.weight
            module.packed = torch.ops.mkldnn._reorder_linear_weight(plain.detach())
            module.weight = nn.Parameter(
                torch.empty(plain.shape, dtype=plain.dtype, device="meta"), requires_grad=False
            )
    except (RuntimeError, AttributeError):  # no such op in this torch, no kernel, no memory
        return False  # modules packed before a failure stay so: the same bits either way
    return True


class RMSNorm(nn.Module):
    """Llama's RMSNorm (weight times the normed input cast back), or Gemma's (`gemma`: the
    input times 1 + weight in float32, then cast)."""

    def __init__(self, size: int, eps: float, gemma: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.variance_epsilon = eps
        self.gemma = gemma

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        dtype = hidden.dtype
        if self.gemma:
            x = hidden.float()
            x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
            return (x * (1.0 + self.weight.float())).type_as(hidden)
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
        self.scaling = config.scaling
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
        self.norms = config.gemma  # Gemma 3 norms each head's queries and keys
        if self.norms:
            self.q_norm = RMSNorm(config.head_dim, config.rms_norm_eps, gemma=True)
            self.k_norm = RMSNorm(config.head_dim, config.rms_norm_eps, gemma=True)

    def forward(
        self,
        hidden: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        cache: LiteCache | None,
    ) -> torch.Tensor:
        shape = hidden.shape[:-1]
        split = (*shape, -1, self.head_dim)
        query = self.q_proj(hidden).view(split).transpose(1, 2)
        key = self.k_proj(hidden).view(split).transpose(1, 2)
        value = self.v_proj(hidden).view(split).transpose(1, 2)
        if self.norms:
            query, key = self.q_norm(query), self.k_norm(key)
        cos, sin = rotary[0].unsqueeze(1), rotary[1].unsqueeze(1)
        query = (query * cos) + (rotate_half(query) * sin)
        key = (key * cos) + (rotate_half(key) * sin)
        if cache is not None:
            key, value = cache.update(key, value, self.index)
        key, value = repeat_kv(key, self.groups), repeat_kv(value, self.groups)
        # the (B, heads, length, keys) scores of long texts, a few rows at a time
        batch, heads, length, _ = query.shape
        step = max(1, SCORES_AT_ONCE // (heads * length * key.shape[2]))
        if step >= batch:
            out = self._attend(query, key, value, mask)
        else:
            parts = [slice(i, i + step) for i in range(0, batch, step)]
            out = torch.cat([self._attend(query[p], key[p], value[p], mask[p]) for p in parts])
        out = out.transpose(1, 2).contiguous()
        return self.o_proj(out.reshape(*shape, -1).contiguous())

    def _attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """transformers' eager attention (tpsearch loads models on the CPU with it): 1.2-2.3x
        faster than scaled_dot_product_attention here at tpsearch's lengths and head sizes."""
        scores = torch.matmul(query, key.transpose(2, 3)) * self.scaling + mask
        weights = functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        return torch.matmul(weights, value)


class MLP(nn.Module):
    def __init__(self, config: LiteConfig) -> None:
        super().__init__()
        hidden, inner = config.hidden_size, config.intermediate_size
        self.gate_proj = Linear(hidden, inner, bias=False)
        self.up_proj = Linear(hidden, inner, bias=False)
        self.down_proj = Linear(inner, hidden, bias=False)
        self.tanh_gelu = config.activation == "gelu_tanh"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.gate_proj(x)
        if self.tanh_gelu:
            gate = functional.gelu(gate, approximate="tanh")
        else:
            gate = functional.silu(gate)
        return self.down_proj(gate * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, config: LiteConfig, index: int) -> None:
        super().__init__()
        size, eps, gemma = config.hidden_size, config.rms_norm_eps, config.gemma
        self.self_attn = Attention(config, index)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(size, eps, gemma)
        self.post_attention_layernorm = RMSNorm(size, eps, gemma)
        self.gemma = gemma
        if gemma:  # Gemma 3 norms the attention's output, and the MLP's input and output
            self.pre_feedforward_layernorm = RMSNorm(size, eps, gemma)
            self.post_feedforward_layernorm = RMSNorm(size, eps, gemma)

    def forward(
        self,
        hidden: torch.Tensor,
        rotary: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        cache: LiteCache | None,
    ) -> torch.Tensor:
        attended = self.self_attn(self.input_layernorm(hidden), rotary, mask, cache)
        if not self.gemma:
            hidden = hidden + attended
            return hidden + self.mlp(self.post_attention_layernorm(hidden))
        hidden = hidden + self.post_attention_layernorm(attended)
        mlp = self.mlp(self.pre_feedforward_layernorm(hidden))
        return hidden + self.post_feedforward_layernorm(mlp)


class LiteCache:
    """Keys and values per layer, appended to as a forward pass runs: the part of transformers'
    DynamicCache that the template head cache uses, sliding-window layers keeping only their
    last window - 1 tokens as transformers' do."""

    def __init__(self, windows: tuple[int | None, ...]) -> None:
        self.windows = windows
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.seen = 0  # tokens given to the cache (through its first layer)

    def update(
        self, key: torch.Tensor, value: torch.Tensor, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's keys and values so far, `key` and `value` appended; what is kept of
        them for the next call."""
        if index == 0:
            self.seen += key.shape[-2]
        if index < len(self.layers):
            old_key, old_value = self.layers[index]
            key = torch.cat([old_key, key], dim=-2)
            value = torch.cat([old_value, value], dim=-2)
        window = self.windows[index]
        kept = (key, value)
        if window is not None:
            kept = (key[:, :, -window + 1 :], value[:, :, -window + 1 :])
        if index < len(self.layers):
            self.layers[index] = kept
        else:
            self.layers.append(kept)
        return key, value

    def get_seq_length(self) -> int:
        return self.seen

    def kept(self, window: int | None) -> int:
        """How many of the tokens seen layers with this window hold."""
        return self.seen if window is None else len(range(self.seen)[-window + 1 :])

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
        kind = ScaledEmbedding if config.gemma else Embedding
        self.embed_tokens = kind(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Layer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, config.gemma)
        self.inv_freqs: dict[float, torch.Tensor] = {}
        self.pack_at: int | None = None  # pack_weights at the first batch of this many tokens

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def get_memory_footprint(self) -> int:
        tensors = [*self.parameters(), *self.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def new_cache(self) -> LiteCache:
        return LiteCache(self.config.windows)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        use_cache: bool = False,
        past_key_values: LiteCache | None = None,
    ) -> torch.Tensor:
        hidden = inputs_embeds
        rows = hidden.shape[0] * hidden.shape[1]
        if self.pack_at is not None and rows >= self.pack_at:
            self.pack_at = None  # once, whether it packs or not
            pack_weights(self, rows)
        cache = past_key_values if use_cache else None
        past = cache.get_seq_length() if cache is not None else 0
        rotary = {theta: _rotary(position_ids, f, hidden) for theta, f in self.inv_freqs.items()}
        length = hidden.shape[1]
        masks = {
            w: _mask(attention_mask, length, past, w, cache.kept(w) if cache else 0, hidden.dtype)
            for w in set(self.config.windows)
        }
        for layer, theta, window in zip(
            self.layers, self.config.rope_thetas, self.config.windows, strict=True
        ):
            hidden = layer(hidden, rotary[theta], masks[window], cache)
        return self.norm(hidden)


class Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        """As `Linear.reset_parameters`."""


class ScaledEmbedding(Embedding):
    """Gemma's: the looked-up rows times sqrt(hidden size) in the weight's dtype, as in
    transformers, where the scale is a buffer cast with the model (25.25 in bf16, not 25.30:
    tpsearch's <PST> placeholder reads `embed_scale` and gets the same rounded value)."""

    def __init__(self, count: int, size: int) -> None:
        super().__init__(count, size)
        self.root = size**0.5

    @property
    def embed_scale(self) -> torch.Tensor:
        return torch.tensor(self.root).to(self.weight.dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return super().forward(ids) * self.embed_scale


def _rotary(
    positions: torch.Tensor, inv_freq: torch.Tensor, hidden: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    freqs = positions[..., None].float() * inv_freq.to(hidden.device)
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos().to(hidden.dtype), angles.sin().to(hidden.dtype)


def _mask(
    attention: torch.Tensor,
    length: int,
    past: int,
    window: int | None,
    kept: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """What transformers' eager path adds to the attention scores (masking_utils.eager_mask)
    for `length` new tokens after `past` cached ones, of which the layers hold the last `kept`:
    a (B, 1, length, kept + length) mask of 0 where a key is seen (causal, not padding, inside
    a sliding window if any) and the dtype's lowest value where not."""
    padding = attention[:, past - kept :]  # (B, keys): the held keys' part of the mask
    columns = torch.arange(past - kept, past + length, device=attention.device)
    rows = torch.arange(past, past + length, device=attention.device)
    allowed = columns[None, :] <= rows[:, None]  # (length, keys)
    if window is not None:
        allowed = allowed & (columns[None, :] > rows[:, None] - window)
    seen = allowed[None, None] & padding.bool()[:, None, None, :]
    zero = torch.zeros((), device=seen.device, dtype=dtype)
    return torch.where(seen, zero, torch.finfo(dtype).min)
