"""Tiny decoder-only models that tests build offline and load through the real loading path.

Each family gets a small config of its own architecture, random weights, and a byte-level BPE
tokenizer trained here on the shipped STS sentences; both are written with `save_pretrained`,
exactly the layout of a model downloaded from the hub. Families that use a BOS token (Llama,
Mistral, Gemma2) get one, so BOS handling is exercised too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STS_DEV = REPO / "data" / "sts" / "sts-dev.csv"

FAMILIES = ("llama", "qwen2", "mistral", "gemma2", "qwen3", "phi3")
# Stacks laid out otherwise (layers and final norm under other names, learned positions).
OTHER_LAYOUTS = ("gpt_neox", "phi", "gpt2")
BOS_FAMILIES = {"llama", "mistral", "gemma2", "gemma3"}

# Shapes big enough to exercise grouped-query attention and bitsandbytes blocks (64).
TINY = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
)


def _corpus() -> Iterator[str]:
    from tpsearch.engine.templates import BUILTIN_TEMPLATES

    yield from BUILTIN_TEMPLATES.values()
    for line in STS_DEV.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7:
            yield cols[5]
            yield cols[6]


def build_tokenizer(  # type: ignore[no-untyped-def]
    with_bos: bool, vocab_size: int = 1024, with_eos: bool = False
):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|bos|>", "<|eos|>", "<|pad|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    if with_bos:
        bos, eos = tok.token_to_id("<|bos|>"), tok.token_to_id("<|eos|>")
        end = " <|eos|>" if with_eos else ""  # some tokenizers (add_eos_token) append one
        tok.post_processor = processors.TemplateProcessing(
            single=f"<|bos|> $A{end}",
            pair=f"<|bos|> $A{end} <|bos|> $B{end}",
            special_tokens=[("<|bos|>", bos), ("<|eos|>", eos)],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )


def build_config(family: str, vocab_size: int, **shape: int):  # type: ignore[no-untyped-def]
    import transformers as tf

    windowed = {"sliding_window": 4096, **shape}  # windows matter only when a test asks
    shape = {**TINY, **shape}
    shape.pop("sliding_window", None)
    ids = dict(bos_token_id=0, eos_token_id=1, pad_token_id=2)
    if family == "llama":
        return tf.LlamaConfig(vocab_size=vocab_size, **shape, **ids)
    if family == "qwen2":
        return tf.Qwen2Config(vocab_size=vocab_size, tie_word_embeddings=True, **shape, **ids)
    if family == "mistral":
        window = windowed["sliding_window"]
        return tf.MistralConfig(vocab_size=vocab_size, sliding_window=window, **shape, **ids)
    if family == "gemma2":
        return tf.Gemma2Config(
            vocab_size=vocab_size,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=windowed["sliding_window"],
            **shape,
            **ids,
        )
    if family == "gemma3":  # sliding and full attention layers, each with its own rotary base
        kinds = ["sliding_attention", "sliding_attention", "full_attention"]
        return tf.Gemma3TextConfig(
            vocab_size=vocab_size,
            head_dim=16,
            query_pre_attn_scalar=16,
            sliding_window=windowed["sliding_window"],
            layer_types=kinds * (shape["num_hidden_layers"] // 3),
            **shape,
            **ids,
        )
    if family == "qwen3":
        return tf.Qwen3Config(vocab_size=vocab_size, head_dim=16, **shape, **ids)
    if family == "phi3":
        return tf.Phi3Config(vocab_size=vocab_size, **shape, **ids)
    if family == "gpt_neox":  # Pythia: .layers and .final_layer_norm, partial rotary
        shape.pop("num_key_value_heads")
        return tf.GPTNeoXConfig(vocab_size=vocab_size, rotary_pct=0.25, **shape, **ids)
    if family == "phi":  # Phi-1/2: .layers and .final_layernorm
        return tf.PhiConfig(vocab_size=vocab_size, **shape, **ids)
    if family == "gpt2":  # .h and .ln_f, learned absolute positions
        return tf.GPT2Config(
            vocab_size=vocab_size,
            n_embd=shape["hidden_size"],
            n_layer=shape["num_hidden_layers"],
            n_head=shape["num_attention_heads"],
            n_inner=shape["intermediate_size"],
            n_positions=shape["max_position_embeddings"],
            **ids,
        )
    raise ValueError(f"unknown family {family!r}; known: {FAMILIES + OTHER_LAYOUTS}")


def save_tiny_model(
    path: Path,
    family: str = "qwen2",
    seed: int = 0,
    dtype: str = "float32",
    with_eos: bool = False,
    **shape: int,
) -> Path:
    """Write a random-weight `family` model and its tokenizer to `path` (fp32 weights unless
    `dtype` says otherwise: hub checkpoints are mostly bf16)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer(with_bos=family in BOS_FAMILIES, with_eos=with_eos)
    config = build_config(family, vocab_size=len(tokenizer), **shape)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(getattr(torch, dtype))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
