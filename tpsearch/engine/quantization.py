"""bitsandbytes models in tpsearch: a cached quantized copy, memory, and the CPU matmul path.

Quantized copies of models, so that later runs read 4-bit weights instead of quantizing again.

bitsandbytes quantizes a full-precision checkpoint every time it loads one: on a laptop CPU that
takes seconds to minutes, and every `tpsearch query` process would pay it. The first quantized
load therefore writes the quantized decoder stack to a folder named by a digest of the exact
source files (names, sizes, modification times) and the library versions; later loads read it.
The vectors are bit-identical either way (tests/test_backbone.py). Any such folder can be
deleted at any time: it is rebuilt on the next load.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tpsearch.errors import TpsearchWarning

COMPLETE = ".complete"  # written last: a folder without it is a crashed write, never read


def cache_folder(cache_root: Path, source_dir: Path, precision: str) -> Path:
    """Where the `precision` copy of the model in `source_dir` lives (or would live).

    Library versions are read from package metadata: importing bitsandbytes takes seconds
    (it imports torch's compiler), and a dense CPU copy is read without it.
    """
    from importlib.metadata import version

    from tpsearch.engine.lite import TOKENIZER_FILE, TOKENIZER_INFO

    ours = {TOKENIZER_FILE, TOKENIZER_INFO}  # kept beside a converted GGUF later: not its model
    files = sorted(
        (path.name, path.stat().st_size, path.stat().st_mtime_ns)
        for path in Path(source_dir).iterdir()
        if path.is_file() and path.name not in ours  # hub snapshots link to blobs: stat follows
    )
    versions = (version("transformers"), version("bitsandbytes"), version("torch"))
    digest = hashlib.sha256(json.dumps([precision, versions, files]).encode()).hexdigest()
    return Path(cache_root) / f"{Path(source_dir).name}-{precision}-{digest[:16]}"


def cached(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


def save(model: Any, folder: Path) -> None:
    """Write the quantized model to `folder` atomically; on failure warn and go on without."""
    _publish(
        folder,
        model.save_pretrained,
        "a quantized copy",
        "; the model will be quantized again next time",
    )


def _publish(folder: Path, write: Callable[[Path], None], what: str, then: str = "") -> bool:
    """Fill `folder` with `write` atomically: into a temporary folder beside it, marked
    complete, then renamed into place. On failure warn (naming `what`) and return False."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        write(temporary)
        (temporary / COMPLETE).write_text("", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)  # a crashed write of the same key
        temporary.rename(folder)
    except (OSError, ValueError, NotImplementedError) as error:
        shutil.rmtree(temporary, ignore_errors=True)
        warnings.warn(
            f"could not keep {what} in {folder.parent} ({error}){then}",
            TpsearchWarning,
            stacklevel=4,  # whoever loaded the model (save -> load_backbone -> caller)
        )
        return False
    return True


# A dense copy is kept for models up to this many bytes in bf16 (about 1B parameters);
# larger ones stay packed in memory, where 4-bit saves gigabytes.
DENSE_LIMIT_BYTES = 2 * 1024**3
DENSE = "4bit-dense"  # the cache_folder precision key of a dense copy


def save_dense(model: Any, folder: Path) -> bool:
    """Write the 4-bit `model`'s weights dequantized to bf16, as a plain checkpoint, for CPU.

    On the CPU tpsearch runs a 4-bit layer as "dequantize the weight, then a bf16 matmul"
    (`prefer_dequantize_matmul`), so a checkpoint holding the dequantized nf4 values gives
    bit-identical vectors (tests/test_backbone.py) while loading without bitsandbytes (about
    2 s less per process) and skipping the dequantizing in every forward pass. Only models up
    to `DENSE_LIMIT_BYTES` in bf16; False when none was written.
    """
    import bitsandbytes as bnb
    import torch
    from safetensors.torch import save_file

    linears = {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, bnb.nn.Linear4bit)
    }
    if not linears:
        return False
    state: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        if not any(key.startswith(f"{name}.") for name in linears):
            state[key] = value.detach().to(torch.bfloat16).contiguous()
    for name, module in linears.items():
        packed: Any = module.weight
        weight = bnb.functional.dequantize_4bit(packed.data, packed.quant_state)
        state[f"{name}.weight"] = weight.to(torch.bfloat16).contiguous()
        if module.bias is not None:
            state[f"{name}.bias"] = module.bias.detach().to(torch.bfloat16).contiguous()
    if sum(t.numel() * t.element_size() for t in state.values()) > DENSE_LIMIT_BYTES:
        return False
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["dtype"] = "bfloat16"

    def write(temporary: Path) -> None:
        save_file(state, str(temporary / "model.safetensors"), metadata={"format": "pt"})
        (temporary / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")

    return _publish(folder, write, "a dense copy")


def source_dir(source: str) -> Path | None:
    """The local folder holding a model's files: the folder itself, or the hub cache snapshot."""
    path = Path(source)
    if path.is_dir():
        return path
    import huggingface_hub

    config = huggingface_hub.try_to_load_from_cache(source, "config.json")
    return Path(config).parent if isinstance(config, str) else None


def release_checkpoint_map(model: Any) -> None:
    """Copy the tensors that stay unquantized (embeddings, norms, biases) out of the checkpoint.

    They are zero-copy views of the memory-mapped checkpoint file, and quantizing read every
    page of that file: while any view lives, the whole full-precision checkpoint stays resident
    (about 1 GB for a 0.5B model). Owning these few tensors lets the map go.
    """
    import gc

    import bitsandbytes as bnb

    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not isinstance(param, (bnb.nn.Params4bit, bnb.nn.Int8Params)):
                param.data = param.data.clone()
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None:
                module._buffers[name] = buffer.clone()
    gc.collect()


def prefer_dequantize_matmul(model: Any) -> None:
    """On CPU, run 4-bit layers as dequantize + bf16 matmul instead of bitsandbytes' fused kernel.

    bitsandbytes repacks 4-bit weights on the first CPU forward and then runs every matmul in
    its own tiled kernel, built for single-token decoding. tpsearch always feeds whole prompts
    (thousands of rows per batch), where dequantizing one weight (~2 ms) and calling oneDNN's
    bf16 matmul measured 1.36x faster end to end (benchmarks/bench_encoder.py). Weights stay
    4-bit in memory; only one layer's weight is expanded at a time.
    """
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
