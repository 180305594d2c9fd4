"""Loading models the way users name them, and every way that can fail, clearly."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tinymodels import build_tokenizer, save_tiny_model
from tpsearch.engine.backbone import (
    PrecisionFallbackWarning,
    decoder_layout,
    load_backbone,
    resolve_device,
)
from tpsearch.errors import ModelLoadError


def test_only_the_decoder_stack_is_loaded(tiny_model: Callable[[str], Path]) -> None:
    backbone = load_backbone(str(tiny_model("llama")), precision="fp32")
    assert type(backbone.model).__name__ == "LlamaModel"
    assert backbone.num_layers == 6 and backbone.hidden_size == 64
    assert backbone.model_id == str(tiny_model("llama").resolve())


def test_auto_device_is_cuda_when_present_else_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never Apple's MPS unasked: bitsandbytes 4-bit runs on the CPU, not there."""
    import torch

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_precision_falls_back_to_bf16_with_a_warning(
    tiny_model: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes now fails
    with pytest.warns(PrecisionFallbackWarning, match="loading bf16 instead"):
        backbone = load_backbone(str(tiny_model("qwen2")), precision="4bit", device="cpu")
    assert backbone.precision == "bf16"


def test_a_folder_without_config_is_explained(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    with pytest.raises(ModelLoadError, match=r"holds no config\.json"):
        load_backbone(str(tmp_path / "weights"))


def test_a_checkpoint_missing_layers_is_refused(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "short", "qwen2", num_hidden_layers=2)
    config = json.loads((path / "config.json").read_text())
    config["num_hidden_layers"] = 4  # claims layers the weights do not have
    config.pop("layer_types", None)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="lacks weights"):
        load_backbone(str(path), precision="fp32")


def test_encoder_decoder_models_are_refused(tmp_path: Path) -> None:
    from transformers import T5Config

    T5Config(vocab_size=1024, d_model=32, d_ff=64, num_layers=1, num_heads=2).save_pretrained(
        tmp_path
    )
    build_tokenizer(with_bos=False).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="decoder-only"):
        load_backbone(str(tmp_path), precision="fp32")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc")
def test_a_quantized_model_does_not_keep_the_checkpoint_mapped(tmp_path: Path) -> None:
    path = save_tiny_model(tmp_path / "bf16", "qwen2", dtype="bfloat16")  # as on the hub
    weights = path / "model.safetensors"
    backbone = load_backbone(str(path), precision="4bit", device="cpu")
    mapped = [
        line for line in Path("/proc/self/maps").read_text().splitlines() if str(weights) in line
    ]
    assert backbone.precision == "4bit"
    assert mapped == [], "the full-precision checkpoint would stay resident"


def test_a_quantized_copy_is_kept_and_gives_the_same_vectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tpsearch.engine.backbone
    from tpsearch import TPEncoder
    from tpsearch.engine.settings import EncoderSettings

    read_from: list[str] = []
    load_model = tpsearch.engine.backbone._load_model

    def recording(source: str, *args: object) -> object:
        read_from.append(source)
        return load_model(source, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(tpsearch.engine.backbone, "_load_model", recording)
    path = save_tiny_model(tmp_path / "bf16", "qwen2", dtype="bfloat16")
    settings = EncoderSettings(
        model=str(path), precision="4bit", device="cpu", model_cache=tmp_path / "cache"
    )
    first = TPEncoder(settings)
    cache = tmp_path / "cache"
    (packed,) = [p for p in cache.iterdir() if "-4bit-" in p.name and "-dense-" not in p.name]
    (dense,) = [p for p in cache.iterdir() if "-4bit-dense-" in p.name]
    assert (packed / ".complete").is_file() and (dense / ".complete").is_file()
    assert read_from == [str(path.resolve())]

    # On the CPU the next load reads the dequantized copy (with torch alone, engine/lite.py):
    # the same vectors, bit for bit.
    second = TPEncoder(settings)
    assert read_from == [str(path.resolve())], "the second load reads the dense copy"
    assert type(second.backbone.model).__name__ == "DecoderStack"
    texts = ["A man is playing a guitar.", "The stock market fell sharply."]
    assert second.backbone.precision == "4bit" and second.model_id == first.model_id
    assert (second.encode(texts) == first.encode(texts)).all()
    assert second.fingerprint == first.fingerprint

    shutil.rmtree(dense)  # without it, the quantized copy is read (and the dense one written)
    third = TPEncoder(settings)
    assert read_from[1] == str(packed) and (dense / ".complete").is_file()
    assert (third.encode(texts) == first.encode(texts)).all()

    (path / "config.json").touch()  # the model changed on disk: quantize it again
    TPEncoder(settings)
    copies = [p for p in cache.iterdir() if p.is_dir()]
    assert read_from[2] == str(path.resolve()) and len(copies) == 4


def test_decoder_stacks_of_other_layouts_are_found_and_unknown_ones_refused(
    tiny_model: Callable[[str], Path],
) -> None:
    import torch

    for family, layout in (
        ("gpt2", ("h", "ln_f")),
        ("gpt_neox", ("layers", "final_layer_norm")),
        ("phi", ("layers", "final_layernorm")),
    ):
        backbone = load_backbone(str(tiny_model(family)), precision="fp32")
        assert decoder_layout(backbone.model) == layout
        assert backbone.num_layers == 6 and backbone.final_norm is not None

    class Encoder(torch.nn.Module):  # built like BERT: .encoder.layer
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torch.nn.Module()
            self.encoder.layer = torch.nn.ModuleList([torch.nn.Linear(2, 2)])

    with pytest.raises(ModelLoadError, match="not a decoder stack tpsearch knows"):
        decoder_layout(Encoder())
