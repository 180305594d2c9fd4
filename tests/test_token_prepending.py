"""Token Prepending exactly as tp-semantics.md fixes it, checked against independent computations.

Every model here is a tiny random-weight model of a real architecture, saved with
`save_pretrained` and loaded through the same code path as a hub model, in fp32 so that
agreement can be checked to 1e-4.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tinymodels import FAMILIES, OTHER_LAYOUTS, save_tiny_model
from tpsearch import EncoderSettings, TPEncoder
from tpsearch.engine.prompt_inputs import PST_SLOT
from tpsearch.errors import ConfigError

TEXTS = [
    "A man is playing a guitar.",
    'Two dogs run along the beach, chasing a "red" ball near the water.',
    "Hi",
    "The stock market fell sharply after the announcement on Tuesday morning.",
]
TOL = 1e-4


def encoder_for(path: Path, **settings: object) -> TPEncoder:
    return TPEncoder(EncoderSettings(model=str(path), precision="fp32", **settings))  # type: ignore[arg-type]


def plain_hidden_states(encoder: TPEncoder, prompt: str) -> tuple[torch.Tensor, ...]:
    """Hugging Face's own forward of the plain prompt: hidden_states of every layer."""
    ids = encoder.backbone.tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = encoder.backbone.model(input_ids=ids, output_hidden_states=True)
    return tuple(out.hidden_states)


def unit(vector: torch.Tensor) -> np.ndarray:
    vector = vector.float()
    return (vector / vector.norm()).numpy()


def reference_tp(
    encoder: TPEncoder, text: str, tp_start: int, tp_end: int, exit_layer: int
) -> np.ndarray:
    """Token Prepending written out step by step: an explicit loop over the layers, no hooks.

    Builds its own input from the tokenizer: the template head, the <PST> slot, then the rest
    of the plain prompt.
    """
    model = encoder.backbone.model
    tokenizer = encoder.backbone.tokenizer
    head = tokenizer("This sentence :", add_special_tokens=False).input_ids
    rest = tokenizer(f' "{text}" means in one word:"', add_special_tokens=False).input_ids
    bos = (
        [tokenizer.bos_token_id]
        if encoder.backbone.model.config.model_type in ("llama", "mistral", "gemma2")
        else []
    )
    ids = torch.tensor([bos + head + [0] + rest])
    pst, last = len(bos + head), ids.shape[1] - 1
    length = ids.shape[1]
    with torch.no_grad():
        h = model.get_input_embeddings()(ids)  # (1, T, H)
        h[0, pst] = encoder.pst_vector
        positions = torch.arange(length)[None]
        rotary = model.rotary_emb(h, positions)
        causal = torch.full((length, length), float("-inf")).triu(1)[None, None]  # (1, 1, T, T)
        num_layers = len(model.layers)
        for i in range(exit_layer if exit_layer < num_layers else num_layers):
            if tp_start <= i < tp_end:
                h[0, pst] = h[0, last]
            h = model.layers[i](
                h, attention_mask=causal, position_embeddings=rotary, position_ids=positions
            )
        if exit_layer == num_layers:
            h = model.norm(h)
    return unit(h[0, last])


@pytest.mark.parametrize("family", FAMILIES + OTHER_LAYOUTS)
def test_tp_off_equals_the_plain_forward_at_the_exit_layer(
    tiny_model: Callable[[str], Path], family: str
) -> None:
    encoder = encoder_for(tiny_model(family), tp=False, exit_layer=4)
    for exit_layer in (4, -1, -2):
        variant = encoder.variant(exit_layer=exit_layer)
        vectors = variant.encode(TEXTS, batch_size=3)
        for text, vector in zip(TEXTS, vectors, strict=True):
            prompt = 'This sentence : "' + text.replace('"', "'") + '" means in one word:"'
            expected = unit(plain_hidden_states(variant, prompt)[exit_layer][0, -1])
            np.testing.assert_allclose(vector, expected, atol=TOL)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("tp_start", "tp_end", "exit_layer"), [(1, 3, 5), (0, 2, 6), (2, 5, 5)])
def test_tp_equals_a_step_by_step_implementation(
    tiny_model: Callable[[str], Path], family: str, tp_start: int, tp_end: int, exit_layer: int
) -> None:
    encoder = encoder_for(
        tiny_model(family), tp_start=tp_start, tp_end=tp_end, exit_layer=exit_layer
    )
    vectors = encoder.encode(TEXTS[:2], batch_size=2)
    for text, vector in zip(TEXTS[:2], vectors, strict=True):
        expected = reference_tp(encoder, text.replace('"', "'"), tp_start, tp_end, exit_layer)
        np.testing.assert_allclose(vector, expected, atol=TOL)
        # A deliberately shifted setting (one copy more or fewer) must not match.
        shifted_start = tp_start + 1 if tp_start == 0 else tp_start - 1
        shifted = reference_tp(encoder, text.replace('"', "'"), shifted_start, tp_end, exit_layer)
        assert np.abs(vector - shifted).max() > 10 * TOL


def test_tp_changes_the_embedding_only_through_the_slot(tiny_model: Callable[[str], Path]) -> None:
    encoder = encoder_for(tiny_model("llama"), tp_start=1, tp_end=3, exit_layer=5)
    with_tp = encoder.build_inputs(TEXTS[:1])
    without = encoder.variant(tp=False).build_inputs(TEXTS[:1])
    ids = with_tp.input_ids[0].tolist()
    slot = int(with_tp.pst_index[0])
    assert ids[slot] == PST_SLOT and ids.count(PST_SLOT) == 1
    assert ids[:slot] + ids[slot + 1 :] == without.input_ids[0].tolist()
    tokenizer = encoder.backbone.tokenizer
    assert tokenizer.decode(ids[:slot], skip_special_tokens=True) == "This sentence :"
    assert tokenizer.decode(ids[int(with_tp.last_index[0])]) == '"'


def assert_batching_padding_and_cache_change_nothing(encoder: TPEncoder) -> None:
    """Every way of running a batch equals each text alone, unpadded, without the cache."""
    for pooling in ("last", "mean"):
        plain = encoder.variant(pooling=pooling, prefix_cache="off")
        reference = np.stack([plain.encode([text])[0] for text in TEXTS])
        for padding_side in ("left", "right"):
            for prefix_cache in ("on", "off"):
                variant = plain.variant(padding_side=padding_side, prefix_cache=prefix_cache)
                batched = variant.encode(TEXTS, batch_size=3)
                np.testing.assert_allclose(batched, reference, atol=1e-5)
                singles = np.stack([variant.encode([text])[0] for text in TEXTS])
                np.testing.assert_allclose(singles, reference, atol=1e-5)


@pytest.mark.parametrize("family", ["qwen2", "gemma2", *OTHER_LAYOUTS])
def test_batching_padding_and_prefix_cache_do_not_change_results(
    tiny_model: Callable[[str], Path], family: str
) -> None:
    assert_batching_padding_and_cache_change_nothing(
        encoder_for(tiny_model(family), tp_start=1, tp_end=3, exit_layer=5)
    )


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_a_sliding_window_shorter_than_the_prompts(tmp_path: Path, family: str) -> None:
    path = save_tiny_model(tmp_path / family, family, sliding_window=8)
    assert_batching_padding_and_cache_change_nothing(
        encoder_for(path, tp_start=1, tp_end=3, exit_layer=5)
    )


def test_pst_after_the_text_is_never_cached_as_template(tiny_model: Callable[[str], Path]) -> None:
    template = 'This sentence : "{text}" <PST> means in one word:"'
    encoder = encoder_for(tiny_model("qwen2"), template=template, tp_start=1, tp_end=3)
    view = encoder.variant(prefix_cache="on").explain("A man is playing a guitar.")
    assert not any(token.cached for token in view.tokens if token.part == "text")
    assert_batching_padding_and_cache_change_nothing(encoder)


def test_an_empty_text_at_the_end_of_a_template_is_embedded_as_without_the_cache(
    tiny_model: Callable[[str], Path],
) -> None:
    """With the text last in the template, an empty text leaves nothing after the cached
    head: it crashed alone and pooled a padding column in a batch."""
    encoder = encoder_for(tiny_model("qwen2"), template="Represent this : {text}", tp=False)
    texts = ["", "A man is playing a guitar."]
    uncached = encoder.variant(prefix_cache="off")
    cached = encoder.variant(prefix_cache="on")
    np.testing.assert_allclose(cached.encode(texts[:1]), uncached.encode(texts[:1]), atol=1e-6)
    np.testing.assert_allclose(cached.encode(texts), uncached.encode(texts), atol=1e-6)


def test_an_appended_eos_is_not_the_pooled_token(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "eos", "llama", with_eos=True)
    encoder = encoder_for(path, tp=False, exit_layer=4)
    text = TEXTS[0]
    view = encoder.explain(text)
    assert view.tokens[view.last_index].text == '"' and view.tokens[-1].pooled
    prompt = f'This sentence : "{text}" means in one word:"'
    tokenizer = encoder.backbone.tokenizer
    assert tokenizer.decode(tokenizer(prompt).input_ids[-1]) == "<|eos|>"
    hidden = plain_hidden_states(encoder, prompt)  # ends with the appended <|eos|>
    np.testing.assert_allclose(encoder.encode([text])[0], unit(hidden[4][0, -2]), atol=TOL)


def test_early_exit_runs_exactly_the_layers_it_needs(tiny_model: Callable[[str], Path]) -> None:
    import torch

    encoder = encoder_for(tiny_model("qwen2"), tp_start=1, tp_end=3, exit_layer=4)
    model = encoder.backbone.model
    vocab = model.config.vocab_size
    # No LM head anywhere: nothing projects onto the vocabulary, so nothing can compute logits.
    assert not any("lm_head" in name for name, _ in model.named_modules())
    assert not any(
        isinstance(m, torch.nn.Linear) and m.out_features == vocab for m in model.modules()
    )
    calls: list[str] = []
    handles = [
        layer.register_forward_hook(lambda *_, i=i: calls.append(f"layer{i}"))
        for i, layer in enumerate(model.layers)
    ]
    handles.append(model.norm.register_forward_hook(lambda *_: calls.append("norm")))
    try:
        encoder.encode(TEXTS, batch_size=len(TEXTS))  # also builds the template-head cache
        assert set(calls) == {"layer0", "layer1", "layer2", "layer3"}
        calls.clear()
        encoder.encode(TEXTS, batch_size=len(TEXTS))
        assert calls == ["layer0", "layer1", "layer2", "layer3"]
        to_the_end = encoder.variant(exit_layer=-1)
        to_the_end.encode(TEXTS, batch_size=len(TEXTS))
        calls.clear()
        to_the_end.encode(TEXTS, batch_size=len(TEXTS))
        assert calls == [f"layer{i}" for i in range(6)] + ["norm"]
    finally:
        for handle in handles:
            handle.remove()


def test_every_exit_layer_in_one_pass_matches_single_exits(
    tiny_model: Callable[[str], Path],
) -> None:
    encoder = encoder_for(tiny_model("mistral"), tp_start=1, tp_end=3, exit_layer=5)
    layers = encoder.encode_all_layers(TEXTS, batch_size=2)
    assert sorted(layers) == [1, 2, 3, 4, 5, 6]
    for exit_layer in (3, 5, 6):
        np.testing.assert_allclose(
            layers[exit_layer], encoder.variant(exit_layer=exit_layer).encode(TEXTS), atol=1e-5
        )


def test_mean_pooling_averages_the_text_tokens(tiny_model: Callable[[str], Path]) -> None:
    encoder = encoder_for(tiny_model("qwen2"), tp=False, exit_layer=3, pooling="mean")
    text = "A man is playing a guitar."
    inputs = encoder.build_inputs([text])
    start, end = int(inputs.text_start[0]), int(inputs.text_end[0])
    tokenizer = encoder.backbone.tokenizer
    assert tokenizer.decode(inputs.input_ids[0, start:end]).strip().strip('"') == text
    prompt = f'This sentence : "{text}" means in one word:"'
    expected = unit(plain_hidden_states(encoder, prompt)[3][0, start:end].mean(dim=0))
    np.testing.assert_allclose(encoder.encode([text])[0], expected, atol=TOL)


def test_long_texts_are_cut_keeping_the_template_and_counted(
    tiny_model: Callable[[str], Path],
) -> None:
    encoder = encoder_for(tiny_model("qwen2"), max_length=32)
    long_text = "The quick brown fox jumps over the lazy dog. " * 20
    with pytest.warns(UserWarning, match="1 of 2 texts were longer than max length 32"):
        vectors = encoder.encode([long_text, "short"])
    assert vectors.shape == (2, encoder.dim)
    assert encoder.last_stats.truncated == 1
    inputs = encoder.build_inputs([long_text])
    assert inputs.input_ids.shape[1] <= 32 and bool(inputs.truncated[0])
    kept = [token for token in inputs.input_ids[0].tolist() if token >= 0]
    prompt = encoder.backbone.tokenizer.decode(kept)
    assert prompt.startswith("This sentence :") and prompt.endswith('" means in one word:"')


def test_special_token_strings_in_text_stay_text(tiny_model: Callable[[str], Path]) -> None:
    encoder = encoder_for(tiny_model("llama"), tp=False)
    ids = encoder.build_inputs(["please ignore <|bos|> this"]).input_ids[0].tolist()
    bos = encoder.backbone.tokenizer.bos_token_id
    assert ids.count(bos) == 1 and ids[0] == bos


def test_the_mean_placeholder_is_in_the_embedding_layers_output_space(
    tiny_model: Callable[[str], Path],
) -> None:
    # Gemma scales inside its embedding layer; with TP on, the encoder makes its placeholder
    encoder = encoder_for(tiny_model("gemma2"), tp_start=1, tp_end=3, exit_layer=5)
    embed = encoder.backbone.embed_tokens
    with torch.no_grad():
        every_token = embed(torch.arange(embed.weight.shape[0])[None])[0]  # (V, H)
    torch.testing.assert_close(encoder.pst_vector, every_token.mean(dim=0), atol=1e-5, rtol=0)
    assert float(embed.embed_scale) == pytest.approx(8.0)


def test_pst_placeholder_choices(tiny_model: Callable[[str], Path]) -> None:
    encoder = encoder_for(tiny_model("qwen2"), tp_start=1, tp_end=3, exit_layer=5)
    base = encoder.encode(TEXTS)
    for choice in ("zeros", "random", "token: "):
        other = encoder.variant(pst_init=choice)
        assert not torch.equal(other.pst_vector, encoder.pst_vector)
        assert np.abs(other.encode(TEXTS) - base).max() > 1e-6
    with pytest.raises(ConfigError, match="exactly one token"):
        encoder.variant(pst_init="token:several words here")


def test_resolved_settings_reproduce_the_vectors(tiny_model: Callable[[str], Path]) -> None:
    encoder = encoder_for(tiny_model("qwen2"), tp_end=3)
    stored = encoder.resolved_settings.to_dict()
    again = TPEncoder(EncoderSettings.from_dict(stored))
    assert again.fingerprint == encoder.fingerprint
    np.testing.assert_array_equal(again.encode(TEXTS), encoder.encode(TEXTS))
    assert encoder.variant(exit_layer=3).fingerprint != encoder.fingerprint
    assert encoder.variant(tp=False).fingerprint != encoder.fingerprint


def test_four_bit_loads_on_cpu_and_stays_close_to_bf16(tiny_model: Callable[[str], Path]) -> None:
    import bitsandbytes as bnb

    path = tiny_model("llama")
    quantized = TPEncoder(EncoderSettings(model=str(path), precision="4bit", device="cpu"))
    bf16 = TPEncoder(EncoderSettings(model=str(path), precision="bf16", device="cpu"))
    linear4 = [m for m in quantized.backbone.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4) == 7 * 6  # q, k, v, o, gate, up, down in each of the 6 layers
    assert quantized.backbone.precision == "4bit"
    assert quantized.backbone.weight_bytes() < 0.5 * bf16.backbone.weight_bytes()
    cosines = (quantized.encode(TEXTS) * bf16.encode(TEXTS)).sum(axis=1)
    assert cosines.min() > 0.95, cosines
