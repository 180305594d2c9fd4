"""The lite decoder stack (engine/lite.py): the same vectors as transformers, without it.

A cold `tpsearch query` spends most of its time importing transformers; the lite stack loads
the kept dense copy of a model with torch alone. It is only worth having if it changes
nothing a user can see: these tests compare it with transformers bit for bit on real tiny
checkpoints, and check that what it cannot run still loads through transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.tinymodels import build_tokenizer, save_tiny_model

_CONFIG = dict(  # the smallest config.json the lite stack reads
    model_type="llama",
    hidden_size=8,
    intermediate_size=8,
    num_hidden_layers=1,
    num_attention_heads=2,
    rms_norm_eps=1e-6,
    vocab_size=1024,
    rope_theta=10000.0,
)
TEXTS = [
    "A man is playing a guitar.",
    "The stock market fell sharply after the announcement of new tariffs on steel.",
    "x",
    "",
    "<|eos|> in a document is text, not a control token; é ü 漢字 🎸",
    "Path parameters with types " * 12,
]


def _pair(folder: Path):  # type: ignore[no-untyped-def]
    """(transformers backbone, lite backbone) of one bf16 checkpoint folder."""
    import torch
    from transformers import AutoTokenizer

    from tpsearch.engine import lite
    from tpsearch.engine.backbone import Backbone, load_backbone

    full = load_backbone(str(folder), precision="bf16", device="cpu")
    lite.save_tokenizer(AutoTokenizer.from_pretrained(folder), folder)
    assert lite.ready(folder)
    model, tokenizer = lite.load(folder, "cpu")
    light = Backbone(model, tokenizer, full.model_id, None, "bf16", torch.device("cpu"), full.dtype)
    return full, light


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_the_lite_stack_gives_transformers_vectors_bit_for_bit(tmp_path: Path, family: str) -> None:
    from tpsearch import TPEncoder
    from tpsearch.engine.settings import EncoderSettings

    # Gemma 3: a window of 8 tokens, so that the longer texts reach past it, and a width whose
    # square root (the embedding scale) rounds in bf16
    shape = {"sliding_window": 8, "hidden_size": 80} if family == "gemma3" else {}
    folder = save_tiny_model(tmp_path / family, family, dtype="bfloat16", **shape)
    full, light = _pair(folder)
    cases = [
        dict(tp=False),  # the packaged models' default: plain prompt
        dict(tp=True, tp_start=1, tp_end=3, exit_layer=-2),
        dict(tp=True, tp_start=0, tp_end=2, exit_layer=4, prefix_cache="on"),  # head KV cache
        dict(tp=False, pooling="mean", prefix_cache="off"),
        # the text ends the prompt: after the cached head a one-word text is one query token
        dict(tp=False, template="Represent this for searching : {text}", prefix_cache="on"),
    ]
    for case in cases:
        settings = EncoderSettings(model=str(folder), precision="bf16", **case)  # type: ignore[arg-type]
        expected = TPEncoder(settings, _backbone=full)
        got = TPEncoder(settings, _backbone=light)
        # batches of 4 mix lengths (padding); one text alone is the query path (no mask)
        assert np.array_equal(
            got.encode(TEXTS, batch_size=4), expected.encode(TEXTS, batch_size=4)
        ), case
        assert np.array_equal(got.encode(TEXTS[:1]), expected.encode(TEXTS[:1])), case
        layers = got.encode_all_layers(TEXTS[:3])
        assert all(
            np.array_equal(layers[k], v) for k, v in expected.encode_all_layers(TEXTS[:3]).items()
        )


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
def test_an_index_sized_batch_hands_the_weights_to_onednn_and_changes_no_bit(
    tmp_path: Path, family: str
) -> None:
    from tpsearch import TPEncoder
    from tpsearch.engine.allocator import BULK_TOKENS
    from tpsearch.engine.lite_stack import Linear
    from tpsearch.engine.settings import EncoderSettings

    shape = {"sliding_window": 8, "hidden_size": 80} if family == "gemma3" else {}
    folder = save_tiny_model(tmp_path / family, family, dtype="bfloat16", **shape)
    full, light = _pair(folder)
    linears = [m for m in light.model.modules() if isinstance(m, Linear)]
    settings = EncoderSettings(model=str(folder), precision="bf16", prefix_cache="on")
    expected = TPEncoder(settings, _backbone=full)
    got = TPEncoder(settings, _backbone=light)
    assert light.model.pack_at == BULK_TOKENS
    footprint = light.weight_bytes()
    assert np.array_equal(got.encode(TEXTS[:1]), expected.encode(TEXTS[:1]))
    assert all(m.packed is None for m in linears), "a query leaves the weights as they are"
    light.model.pack_at = 16  # an index run's batch, in miniature
    assert np.array_equal(got.encode(TEXTS, batch_size=4), expected.encode(TEXTS, batch_size=4))
    assert all(m.packed is not None for m in linears), "packed at the first large batch"
    assert np.array_equal(got.encode(TEXTS[:1]), expected.encode(TEXTS[:1]))
    assert light.weight_bytes() == footprint, "the footprint still counts every weight"


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_long_texts_attend_a_few_rows_at_a_time_with_the_same_bits(
    tmp_path: Path, family: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tpsearch import TPEncoder
    from tpsearch.engine import lite_stack
    from tpsearch.engine.settings import EncoderSettings

    shape = {"sliding_window": 8, "hidden_size": 80} if family == "gemma3" else {}
    folder = save_tiny_model(tmp_path / family, family, dtype="bfloat16", **shape)
    full, light = _pair(folder)
    settings = EncoderSettings(model=str(folder), precision="bf16", prefix_cache="on")
    expected = TPEncoder(settings, _backbone=full).encode(TEXTS, batch_size=6)
    calls: list[int] = []
    attend = lite_stack.Attention._attend
    monkeypatch.setattr(
        lite_stack.Attention,
        "_attend",
        lambda self, q, k, v, m: calls.append(q.shape[0]) or attend(self, q, k, v, m),
    )
    monkeypatch.setattr(lite_stack, "SCORES_AT_ONCE", 2000)  # a row or two of scores at once
    got = TPEncoder(settings, _backbone=light).encode(TEXTS, batch_size=6)
    assert max(calls) < 6, "the batch was split"
    assert np.array_equal(got, expected)


def test_weights_are_left_plain_where_onednn_would_give_other_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from tpsearch.engine import lite_stack

    folder = save_tiny_model(tmp_path / "m", "llama", dtype="bfloat16")
    _, light = _pair(folder)
    before = light.model.layers[0].mlp.down_proj.weight
    real = lite_stack._packed_linear
    # as on a machine whose kernel for one weight shape sums in another order
    monkeypatch.setattr(
        lite_stack,
        "_packed_linear",
        lambda x, w, b: real(x, w, b) * (1.0 + 2**-7 * (w.shape[0] == before.shape[0])),
    )
    assert not lite_stack.pack_weights(light.model)
    assert light.model.layers[0].mlp.down_proj.weight is before
    assert all(m.packed is None for m in light.model.modules() if isinstance(m, lite_stack.Linear))
    assert before.device == torch.device("cpu")


@pytest.mark.parametrize(
    "with_bos, with_eos, split", [(False, False, False), (True, False, False), (True, True, True)]
)
def test_the_lite_tokenizer_splits_offsets_and_marks_as_transformers_does(
    tmp_path: Path, with_bos: bool, with_eos: bool, split: bool
) -> None:
    from tpsearch.engine import lite

    hf = build_tokenizer(with_bos=with_bos, with_eos=with_eos)
    hf.split_special_tokens = split  # the tokenizer's own default (tokenizer_config.json)
    (tmp_path / "config.json").write_text(json.dumps(_CONFIG), encoding="utf-8")
    lite.save_tokenizer(hf, tmp_path)
    ours = lite.LiteTokenizer(tmp_path)
    for special in (True, False):
        kwargs = dict(
            add_special_tokens=special,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            split_special_tokens=True,
        )
        a, b = hf(TEXTS, **kwargs), ours(TEXTS, **kwargs)
        assert b["input_ids"] == a["input_ids"]
        assert b["special_tokens_mask"] == a["special_tokens_mask"]
        assert [[tuple(o) for o in row] for row in b["offset_mapping"]] == [
            [tuple(o) for o in row] for row in a["offset_mapping"]
        ]
    # without split_special_tokens, the tokenizer's default decides, as in transformers
    assert (
        ours("<|eos|>", add_special_tokens=False)["input_ids"]
        == hf("<|eos|>", add_special_tokens=False)["input_ids"]
    )
    assert (ours.pad_token_id, ours.eos_token_id) == (hf.pad_token_id, hf.eos_token_id)
    assert sorted(ours.all_special_ids) == sorted(hf.all_special_ids)


@pytest.mark.parametrize(
    "change",
    [
        {"model_type": "gemma2"},
        {"model_type": "gemma3_text"},  # without its layer types, windows, query scale
        {"rope_scaling": {"rope_type": "llama3", "factor": 8.0}},
        {"rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0}},
        {"hidden_act": "gelu"},
        {"mlp_bias": True},
        {"model_type": "mistral", "sliding_window": 4096},
        {"model_type": "qwen2", "use_sliding_window": True, "sliding_window": 64},
        {"is_causal": False},  # transformers then attends both ways
        {"auto_map": {"AutoModel": "modeling_custom.Model"}},  # remote code decides the maths
    ],
)
def test_what_the_lite_stack_does_not_implement_is_left_to_transformers(
    tmp_path: Path, change: dict[str, object]
) -> None:
    from tpsearch.engine import lite

    base = _CONFIG
    (tmp_path / "config.json").write_text(json.dumps(base), encoding="utf-8")
    assert lite.read_config(tmp_path) is not None
    (tmp_path / "config.json").write_text(json.dumps({**base, **change}), encoding="utf-8")
    assert lite.read_config(tmp_path) is None and not lite.ready(tmp_path)


@pytest.mark.parametrize("family, loaded", [("llama", "LlamaModel"), ("qwen2", "Qwen2Model")])
def test_a_query_process_reading_the_dense_copy_imports_neither_transformers_nor_bitsandbytes(
    tmp_path: Path, family: str, loaded: str
) -> None:
    """The first process quantizes and keeps the dense copy and its tokenizer; the next one
    loads them with torch alone and embeds exactly as the first did. Importing bitsandbytes
    (it imports torch's compiler) and transformers takes seconds a query never pays."""
    path = save_tiny_model(tmp_path / "bf16", family, dtype="bfloat16")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tpsearch import EncoderSettings, TPEncoder\n"
        f"s = EncoderSettings(model={str(path)!r}, precision='4bit', device='cpu', "
        f"model_cache=Path({str(tmp_path / 'cache')!r}))\n"
        "e = TPEncoder(s)\n"
        "v = e.encode(['A man is playing a guitar.', 'x'], batch_size=2)\n"
        "print(e.fingerprint, v.tobytes().hex()[:64], 'transformers' in sys.modules,\n"
        "      'bitsandbytes' in sys.modules, type(e.backbone.model).__name__)\n"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    switched_off = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TPSEARCH_LITE": "0"},
    )
    first, second, third = (run.stdout.split() for run in [*runs, switched_off])
    assert first[2:] == ["True", "True", loaded]
    assert second[2:] == ["False", "False", "DecoderStack"]
    assert third[2:] == ["True", "False", loaded], "TPSEARCH_LITE=0: transformers loads it"
    assert second[:2] == first[:2] == third[:2], "same fingerprint, same vectors"


def test_a_torn_or_foreign_tokenizer_file_loads_through_transformers_with_the_same_vectors(
    tmp_path: Path,
) -> None:
    """A saved tokenizer that cannot be read (a process killed while writing it, another
    tokenizers version) never breaks a load: transformers loads the model, as before."""
    from tpsearch import EncoderSettings, TPEncoder

    path = save_tiny_model(tmp_path / "bf16", "llama", dtype="bfloat16")
    settings = EncoderSettings(
        model=str(path), precision="4bit", device="cpu", model_cache=tmp_path / "cache"
    )
    expected = TPEncoder(settings).encode(TEXTS[:2])
    (dense,) = (tmp_path / "cache").glob("*-4bit-dense-*")
    backend = dense / "tokenizer-backend.json"
    backend.write_text(backend.read_text(encoding="utf-8")[:5000], encoding="utf-8")
    torn = TPEncoder(settings)
    assert type(torn.backbone.model).__name__ == "LlamaModel"
    assert np.array_equal(torn.encode(TEXTS[:2]), expected)
    again = TPEncoder(settings)  # that load saved the tokenizer again
    assert type(again.backbone.model).__name__ == "DecoderStack"
    assert np.array_equal(again.encode(TEXTS[:2]), expected)

    info = json.loads((dense / "tokenizer-info.json").read_text(encoding="utf-8"))
    info["tokenizers"] = "0.0.1"
    (dense / "tokenizer-info.json").write_text(json.dumps(info), encoding="utf-8")
    assert type(TPEncoder(settings).backbone.model).__name__ == "LlamaModel"
    # ... and that load wrote them again, for this version: the next one is lite again
    assert type(TPEncoder(settings).backbone.model).__name__ == "DecoderStack"


def test_only_a_tokenizer_that_encodes_with_its_backend_alone_is_kept(tmp_path: Path) -> None:
    from tpsearch.engine import lite

    (tmp_path / "config.json").write_text(json.dumps(_CONFIG), encoding="utf-8")
    hf = build_tokenizer(with_bos=True)

    class Infilling(type(hf)):  # type: ignore[misc]  # as CodeLlama's: its own _encode_plus
        def _encode_plus(self, *args: object, **kwargs: object) -> object:
            return super()._encode_plus(*args, **kwargs)

    lite.save_tokenizer(Infilling(tokenizer_object=hf.backend_tokenizer), tmp_path)
    assert not (tmp_path / lite.TOKENIZER_INFO).exists() and not lite.ready(tmp_path)
    lite.save_tokenizer(hf, tmp_path)
    assert (tmp_path / lite.TOKENIZER_INFO).exists()


def test_a_converted_gguf_at_bf16_loads_lite_the_second_time_with_the_same_vectors(
    tmp_path: Path,
) -> None:
    """A GGUF tpsearch converted is a folder of its own in the model cache: at bf16 the second
    load reads it with the lite stack (the F32 weights cast to bf16 as transformers casts
    them), and embeds bit for bit as the first load through transformers did."""
    from tests.tinygguf import write_tiny_gguf
    from tpsearch import EncoderSettings, TPEncoder
    from tpsearch.engine import lite, quantization

    folder = save_tiny_model(tmp_path / "llama", "llama")
    (tmp_path / "gguf").mkdir()
    gguf = write_tiny_gguf(folder, tmp_path / "gguf" / "tiny.F32.gguf")
    settings = EncoderSettings(
        model=str(gguf), precision="bf16", device="cpu", model_cache=tmp_path / "cache"
    )
    first = TPEncoder(settings)
    second = TPEncoder(settings)
    assert type(first.backbone.model).__name__ == "LlamaModel"
    assert type(second.backbone.model).__name__ == "DecoderStack"
    assert second.backbone.precision == "bf16" and second.fingerprint == first.fingerprint
    assert np.array_equal(second.encode(TEXTS), first.encode(TEXTS))
    (converted,) = (tmp_path / "cache" / "gguf").iterdir()
    quantized = quantization.cache_folder(tmp_path / "cache", converted, "4bit")
    for name in (lite.TOKENIZER_FILE, lite.TOKENIZER_INFO):
        (converted / name).rename(tmp_path / name)
    assert quantization.cache_folder(tmp_path / "cache", converted, "4bit") == quantized, (
        "the tokenizer kept beside the conversion leaves its 4-bit copies valid"
    )
    own = save_tiny_model(tmp_path / "own", "llama", dtype="bfloat16")  # a user's folder:
    mine = EncoderSettings(model=str(own), precision="bf16", device="cpu", model_cache=tmp_path)
    assert type(TPEncoder(mine).backbone.model).__name__ == "LlamaModel"
    assert not list(own.glob("tokenizer-*")), "nothing is written into a user's folder"
