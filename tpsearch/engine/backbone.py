"""Load the decoder stack of a causal LM (4-bit, 8-bit, bf16, fp16 or fp32) and its tokenizer.

Only the base model is loaded (`AutoModel`: embeddings, decoder layers, final norm): the LM
head is never built, so its weights are neither read nor kept in memory. A model is named the
way users name it (see `sources.py`: a hub id, a local directory, a GGUF file or a packaged
model). Every way this can fail ends in one `ModelLoadError` that says how to fix it.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tpsearch.engine.quiet import quiet_libraries
from tpsearch.engine.settings import Precision
from tpsearch.engine.sources import how_to_fix, resolve_model
from tpsearch.errors import ConfigError, ModelLoadError, TpsearchWarning, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class PrecisionFallbackWarning(TpsearchWarning):
    """bitsandbytes cannot run on this device, so the model was loaded in bf16 instead."""


@dataclass
class Backbone:
    """A loaded decoder stack and its tokenizer, with the parts Token Prepending needs."""

    model: PreTrainedModel  # the base model (no LM head); or lite_stack.DecoderStack
    tokenizer: PreTrainedTokenizerBase  # or lite.LiteTokenizer (the calls tpsearch makes)
    model_id: str  # hub id, absolute path of a local directory or GGUF file, or packaged name
    revision: str | None  # hub commit of the weights, or a GGUF's origin and SHA-256, when known
    precision: Precision  # what was actually loaded (after any fallback)
    device: torch.device
    dtype: torch.dtype  # dtype of the hidden states

    @cached_property
    def _layout(self) -> tuple[str, str]:
        return decoder_layout(self.model)

    @cached_property
    def layers(self) -> nn.ModuleList:
        return cast("nn.ModuleList", _attribute(self.model, self._layout[0]))

    @cached_property
    def final_norm(self) -> nn.Module:
        return cast("nn.Module", _attribute(self.model, self._layout[1]))

    @property
    def embed_tokens(self) -> nn.Module:
        return self.model.get_input_embeddings()

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    @cached_property
    def cache_argument(self) -> str:
        """The name `forward` takes a KV cache under: `cache` in newer transformers releases,
        where `past_key_values` is deprecated (and goes in 5.40); `past_key_values` before."""
        import inspect

        parameters = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in parameters else "past_key_values"

    def weight_bytes(self) -> int:
        """Bytes held by parameters and buffers (quantized weights count at their packed size)."""
        return int(self.model.get_memory_footprint())


# Where decoder stacks keep their layers and final norm: Llama, Qwen, Mistral, Gemma, Phi-3
# and most recent models; Phi-1/2; GPT-NeoX (Pythia); GPT-2, Falcon, Bloom; OPT.
DECODER_LAYOUTS = (
    ("layers", "norm"),
    ("layers", "final_layernorm"),
    ("layers", "final_layer_norm"),
    ("h", "ln_f"),
    ("decoder.layers", "decoder.final_layer_norm"),
)


def _attribute(model: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        model = getattr(model, name, None)
    return model


def decoder_layout(model: Any) -> tuple[str, str]:
    """(layers, final norm) attribute paths of a decoder stack; ModelLoadError if unknown."""
    import torch

    for layers, norm in DECODER_LAYOUTS:
        found = _attribute(model, layers), _attribute(model, norm)
        if isinstance(found[0], torch.nn.ModuleList) and isinstance(found[1], torch.nn.Module):
            return layers, norm
    known = ", ".join(f"`.{layers}` and `.{norm}`" for layers, norm in DECODER_LAYOUTS)
    raise ModelLoadError(
        f"{type(model).__name__} keeps its layers and final norm where tpsearch does not look "
        f"({known}): it is not a decoder stack tpsearch knows"
    )


def load_backbone(
    model: str,
    precision: Precision = "4bit",
    device: str = "auto",
    trust_remote_code: bool = False,
    model_cache: Path | None = None,
    phase: Callable[[str], None] | None = None,
) -> Backbone:
    """Load `model`'s decoder stack and tokenizer on `device` in `precision`.

    With `model_cache`, a 4/8-bit model is quantized once and read back from there later
    (see quantization.py): the same weights, a fraction of the load time; a GGUF is converted
    once and kept there too (without it, converted again in every process). `phase` hears
    about slow one-time steps (converting a GGUF), for progress lines.
    """
    import torch

    from tpsearch.engine import lite, quantization

    target = resolve_device(device)
    with quiet_libraries(importing=False):
        found = resolve_model(model, model_cache, phase)
    source, local_only, model_id = found.path, found.local_only, found.model_id
    files = quantization.source_dir(source)
    dense = None  # 4-bit on the CPU: the dequantized weights, kept (quantization.save_dense)
    if model_cache is not None and files is not None and (precision, target) == ("4bit", "cpu"):
        dense = quantization.cache_folder(model_cache, files, quantization.DENSE)
    kept = dense if dense is not None and quantization.cached(dense) else None
    if (precision, target) == ("bf16", "cpu") and _converted_by_us(files, model_cache):
        kept = files  # a GGUF tpsearch converted: weights and a folder of its own, read as kept
    light = None  # without importing transformers, when the dense copy allows
    if kept is not None and not trust_remote_code and lite.ready(kept):
        light = lite.load(kept, target)
    if light is not None:
        base, tokenizer = light
        revision = _revision(found.revision, source, files, base)
        return Backbone(
            cast("PreTrainedModel", base),  # the same calls work on it (tests/test_lite.py)
            cast("PreTrainedTokenizerBase", tokenizer),
            model_id,
            revision,
            precision,
            torch.device(target),
            torch.bfloat16,
        )
    with quiet_libraries():
        tokenizer = _load_tokenizer(source, local_only, trust_remote_code)
        packed = True
        if kept is not None:
            base, dtype = _load_model(str(kept), True, "bf16", target, trust_remote_code)
            lite.save_tokenizer(tokenizer, kept)  # the next process loads without transformers
            packed = False
        else:
            precision = _usable_precision(precision, target)
            copy = None
            if model_cache is not None and files is not None and precision in ("4bit", "8bit"):
                copy = quantization.cache_folder(model_cache, files, precision)
            if copy is not None and quantization.cached(copy):
                base, dtype = _load_model(str(copy), True, precision, target, trust_remote_code)
            else:
                base, dtype, precision = _load_or_fall_back(
                    source, local_only, precision, target, trust_remote_code
                )
                if copy is not None and precision in ("4bit", "8bit"):
                    quantization.save(base, copy)
            if dense is not None and precision == "4bit" and quantization.save_dense(base, dense):
                lite.save_tokenizer(tokenizer, dense)
    base.eval()
    base.requires_grad_(False)
    if packed and precision in ("4bit", "8bit"):
        quantization.release_checkpoint_map(base)
    if packed and precision == "4bit" and target == "cpu":
        quantization.prefer_dequantize_matmul(base)
    revision = _revision(found.revision, source, files, base)
    return Backbone(base, tokenizer, model_id, revision, precision, torch.device(target), dtype)


def _converted_by_us(files: Path | None, model_cache: Path | None) -> bool:
    """Whether `files` is a GGUF conversion in `model_cache`: the lite stack may read it, and
    keep the tokenizer it needs beside it."""
    from tpsearch.engine.gguf_files import is_conversion

    return files is not None and model_cache is not None and is_conversion(files, model_cache)


def _revision(known: str | None, source: str, files: Path | None, base: Any) -> str | None:
    """What the fingerprint records of the weights: a GGUF's origin or a packaged model's
    version when known, else the hub snapshot's commit, else the config's commit hash."""
    hub_snapshot = files is not None and not Path(source).is_dir()
    found = files.name if hub_snapshot and files else getattr(base.config, "_commit_hash", None)
    return known or found


def _load_or_fall_back(
    source: str, local_only: bool, precision: Precision, device: str, trust_remote_code: bool
) -> tuple[Any, torch.dtype, Precision]:
    """Load in `precision`; if bitsandbytes fails on this device, warn and load bf16."""
    try:
        base, dtype = _load_model(source, local_only, precision, device, trust_remote_code)
        return base, dtype, precision
    except (ImportError, RuntimeError) as error:
        if precision not in ("4bit", "8bit") or not _is_bitsandbytes_failure(error):
            raise
        warnings.warn(
            f"bitsandbytes failed on {device} ({first_line(error)}): loading bf16 instead",
            PrecisionFallbackWarning,
            stacklevel=3,
        )
    base, dtype = _load_model(source, local_only, "bf16", device, trust_remote_code)
    return base, dtype, "bf16"


def load_tokenizer(
    model: str, trust_remote_code: bool = False, model_cache: Path | None = None
) -> tuple[Any, str, int]:
    """(tokenizer, model id to record, number of decoder layers) without loading any weights.

    A GGUF not converted yet is not converted for this: its tokenizer and depth are read from
    the file itself (the converted copy's tokenizer is saved from that same tokenizer).
    """
    from tpsearch.engine.gguf_files import read_header

    with quiet_libraries():
        found = resolve_model(model, model_cache, convert=False)
        tokenizer = _load_tokenizer(
            found.path, found.local_only, trust_remote_code, found.gguf_file
        )
        if found.gguf_file is not None:
            layers = read_header(Path(found.path) / found.gguf_file).layers
            if layers is None:
                raise ModelLoadError(f"{found.gguf_file} does not say how many layers it has")
            return tokenizer, found.model_id, layers
        config = _load_config(found.path, found.local_only, trust_remote_code)
    return tokenizer, found.model_id, int(config.num_hidden_layers)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":  # Apple's MPS only when asked: 4-bit runs on the CPU, not there
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"invalid device {device!r}: choose auto, cpu, cuda, cuda:N or mps")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but torch sees no CUDA GPU here")
    return device


def _usable_precision(precision: Precision, device: str) -> Precision:
    """4/8-bit need bitsandbytes on this device; otherwise warn once and use bf16."""
    if precision not in ("4bit", "8bit"):
        return precision
    reason = None
    if device.startswith("mps"):
        reason = "bitsandbytes has no Apple MPS backend"
    else:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as error:
            reason = f"bitsandbytes is not importable: {error}"
    if reason is None:
        return precision
    warnings.warn(f"{reason}: loading bf16 instead", PrecisionFallbackWarning, stacklevel=3)
    return "bf16"


def _load_tokenizer(
    source: str, local_only: bool, trust_remote_code: bool, gguf_file: str | None = None
) -> Any:
    from transformers import AutoTokenizer

    from_file = {"gguf_file": gguf_file} if gguf_file is not None else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, local_files_only=local_only, trust_remote_code=trust_remote_code, **from_file
        )
    except (OSError, ValueError, KeyError) as error:
        message = f"cannot load the tokenizer of {source}: {first_line(error)}"
        raise ModelLoadError(message) from error
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"the tokenizer of {source} is not a fast (Rust) tokenizer; tpsearch needs its "
            "character offsets to place the <PST> slot and find the text's tokens"
        )
    return tokenizer


def _load_model(
    source: str, local_only: bool, precision: Precision, device: str, trust_remote_code: bool
) -> tuple[Any, torch.dtype]:
    import torch
    from transformers import AutoModel, BitsAndBytesConfig

    config = _load_config(source, local_only, trust_remote_code)
    compute = _compute_dtype(precision, device)
    quantization = None
    if getattr(config, "quantization_config", None) is not None:
        pass  # quantized already (a tpsearch cache copy, or a bitsandbytes checkpoint)
    elif precision == "4bit":
        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
    elif precision == "8bit":
        quantization = BitsAndBytesConfig(load_in_8bit=True)
    # transformers' eager attention: on the CPU 1.2-2.3x faster than torch's SDPA (its default)
    eager = {"attn_implementation": "eager"} if device == "cpu" and not trust_remote_code else {}
    try:
        model, info = AutoModel.from_pretrained(
            source,
            config=config,
            **eager,
            dtype=compute,
            quantization_config=quantization,
            device_map={"": device},
            local_files_only=local_only,
            trust_remote_code=trust_remote_code,
            output_loading_info=True,
        )
    except pickle.UnpicklingError as error:
        raise ModelLoadError(
            f"the weights in {source} are a pickle that torch's safe loader refuses "
            f"({_refused_by_loader(error)}): tpsearch never runs code from a model file. If "
            'you trust it, convert it to safetensors once: python -c "from transformers '
            "import AutoModelForCausalLM as M; M.from_pretrained('DIR').save_pretrained('NEW')\""
        ) from None
    except OSError as error:
        message = f"cannot load the weights of {source}: {first_line(error)}"
        if local_only and not Path(source).is_dir():  # a hub id, cached only in part
            message += "\n" + how_to_fix(source)
        raise ModelLoadError(message) from error
    missing = [key for key in info.get("missing_keys", ()) if "rotary" not in key]
    if missing:
        raise ModelLoadError(
            f"{source} lacks weights for {len(missing)} tensors of its decoder "
            f"(e.g. {missing[0]}): is it a complete causal LM checkpoint?"
        )
    decoder_layout(model)  # a stack without known layers and final norm fails here, clearly
    return model, compute if precision != "fp32" else torch.float32


def _refused_by_loader(error: Exception) -> str:
    """The line of torch's message that says what the pickle wanted to load."""
    import re

    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    return f"it asks to run {found.group(1)}" if found else first_line(error)


def _load_config(source: str, local_only: bool, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(
            source, local_files_only=local_only, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read the config of {source}: {first_line(error)}") from error
    if getattr(config, "is_encoder_decoder", False):
        raise ModelLoadError(
            f"{source} is an encoder-decoder model ({config.model_type}); tpsearch needs a "
            "decoder-only causal LM (Qwen, Llama, Mistral, Gemma, Phi, ...)"
        )
    return config


def _compute_dtype(precision: Precision, device: str) -> torch.dtype:
    import torch

    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        return torch.float16
    if precision == "8bit" and device.startswith("cuda"):
        return torch.float16  # int8 matmuls take fp16 inputs
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _is_bitsandbytes_failure(error: BaseException) -> bool:
    text = f"{type(error).__module__} {error}".lower()
    return "bitsandbytes" in text or "bnb" in text or "quantiz" in text
