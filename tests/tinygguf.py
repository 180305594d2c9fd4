"""A tiny GGUF file written the way llama.cpp's converter writes one, from a tiny llama folder.

The weights stay F32, so a model read back from the GGUF can be compared exactly with the
same weights read from the save_pretrained folder. The tokenizer is the folder's byte-level
BPE, written as GGUF's gpt2-style tokenizer entries (tokens, token types, merges, special ids).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CONTROL, NORMAL = 3, 1  # gguf token types


def _permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's order of the rotary halves in q/k rows (transformers undoes it on load)."""
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_tiny_gguf(folder: Path, out: Path, architecture: str = "llama") -> Path:
    """Write the tiny llama model in `folder` (tinymodels.save_tiny_model) as the GGUF `out`."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((folder / "config.json").read_text())
    vocab = json.loads((folder / "tokenizer.json").read_text())
    state = load_file(str(folder / "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    rope = config.get("rope_parameters") or {}
    writer = gguf.GGUFWriter(str(out), architecture)
    writer.add_name("tiny llama for tests")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])

    ids = vocab["model"]["vocab"]
    tokens = sorted(ids, key=ids.get)
    specials = {token["content"]: token["id"] for token in vocab["added_tokens"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in vocab["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([CONTROL if token in specials else NORMAL for token in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(specials["<|bos|>"])
    writer.add_eos_token_id(specials["<|eos|>"])
    writer.add_pad_token_id(specials["<|pad|>"])
    writer.add_add_bos_token(True)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config["num_hidden_layers"])
    for key, value in state.items():
        base, suffix = key.rsplit(".", 1)
        name = names.get_name(base)
        if name is None:
            continue
        if name.endswith("attn_q"):
            value = _permute(value, heads)
        elif name.endswith("attn_k"):
            value = _permute(value, kv_heads)
        writer.add_tensor(f"{name}.{suffix}", np.ascontiguousarray(value, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
