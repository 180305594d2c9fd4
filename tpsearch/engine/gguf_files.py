"""GGUF files as tpsearch models: read the header, hash once, convert once into the model cache.

A GGUF (llama.cpp's format) holds a model's config, tokenizer and weights in one file, the
weights mostly in quantized blocks. transformers reads it (with the `gguf` package) by
dequantizing every block, which takes seconds to minutes; tpsearch does that once per file and
keeps the result as an ordinary `save_pretrained` folder under the model cache,

    <model_cache>/gguf/<sha256[:16]>/     config.json, model.safetensors, tokenizer files

named by the file's SHA-256, so a changed file is a new folder and the same file found at
another path is not converted again. Later loads read that folder like any local model (and
the 4-bit copy cache of quantization.py works on top of it). Weights stored as plain floats
(F32, F16) are kept exactly, in float32; dequantized blocks are kept in bfloat16, far finer
than the 4-8 bit blocks they come from.

The header is read by a small parser here, not by `gguf.GGUFReader` (which parses every entry
of a 262k-token vocabulary into numpy objects: ~10 s) nor by transformers (which imports
torch), so `tpsearch models` can describe a file instantly.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import mmap
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpsearch.errors import ModelLoadError, first_line

GGUF_MAGIC = b"GGUF"
COMPLETE = ".complete"  # written last: a folder without it is a crashed conversion, never read
ORIGIN_FILE = "tpsearch-origin.json"  # what a converted folder was made from, for `tpsearch models`
HASHES_FILE = "sha256.json"  # remembered hashes, keyed by path, size and mtime

# GGUF metadata value types (gguf.md): fixed-size scalars, then string (8) and array (9).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?"}
_SCALARS.update({10: "<Q", 11: "<q", 12: "<d"})
_STRING, _ARRAY = 8, 9
_F32, _F16 = 0, 1  # ggml types of weights stored as plain floats (kept exactly, in float32)

# In transformers' GGUF lists, but no decoder-only transformer stack that TP can run.
_NOT_DECODERS = frozenset({"t5", "t5encoder", "umt5", "mamba", "general", "tokenizer"})


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF file says about itself, without its tensors' data."""

    architecture: str  # general.architecture: llama, qwen2, gemma3, ...
    metadata: dict[str, object]  # scalar and string entries (arrays are skipped)
    tensor_types: tuple[tuple[int, int], ...]  # (ggml type, number of dims) per tensor

    def field(self, key: str) -> object:
        """An architecture-specific entry, e.g. field("block_count") for llama.block_count."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def name(self) -> str | None:
        value = self.metadata.get("general.name")
        return value if isinstance(value, str) else None

    @property
    def layers(self) -> int | None:
        value = self.field("block_count")
        return value if isinstance(value, int) else None

    @property
    def hidden(self) -> int | None:
        value = self.field("embedding_length")
        return value if isinstance(value, int) else None

    @property
    def keeps_float32(self) -> bool:
        """True when some weight matrix is stored as plain F32/F16: convert in float32, exactly."""
        return any(kind in (_F32, _F16) and dims >= 2 for kind, dims in self.tensor_types)


class _Cursor:
    """Reads little-endian GGUF values from a buffer, front to back."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        value = struct.unpack_from(fmt, self.data, self.at)[0]
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.take("<Q")
        if self.at + size > len(self.data):
            raise ValueError("a string runs past the end of the file")
        text = bytes(self.data[self.at : self.at + size]).decode("utf-8", errors="replace")
        self.at += size
        return text

    def value(self, kind: int) -> object:
        """One metadata value; an array is skipped and stands for None."""
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            raise ValueError(f"unknown metadata value type {kind}")
        item, count = self.take("<I"), self.take("<Q")
        if item in _SCALARS:
            self.at += count * struct.calcsize(_SCALARS[item])
        elif item == _STRING:
            for _ in range(count):  # a vocabulary: lengths only, nothing decoded
                size = self.take("<Q")
                self.at += size
        else:
            for _ in range(count):
                self.value(item)
        if self.at > len(self.data):
            raise ValueError("an array runs past the end of the file")
        return None


def is_gguf(path: Path) -> bool:
    """Whether `path` is a file that starts with GGUF's magic bytes."""
    try:
        with path.open("rb") as file:
            return file.read(4) == GGUF_MAGIC
    except OSError:
        return False


def read_header(path: Path) -> GgufHeader:
    """The metadata and tensor types of the GGUF at `path` (its first bytes suffice)."""
    if not is_gguf(path):
        raise ModelLoadError(
            f"{path} is not a GGUF file (it does not start with the bytes 'GGUF'): give a .gguf "
            "model file, a folder written by save_pretrained, or a hub id"
        )
    try:
        with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(_Cursor(data))
    except (OSError, ValueError, struct.error) as error:
        raise ModelLoadError(
            f"{path} is a damaged or truncated GGUF file ({first_line(error)}): download or "
            "install it again"
        ) from error


def _parse(cursor: _Cursor) -> GgufHeader:
    cursor.take("<4s")
    version = cursor.take("<I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version}; tpsearch reads versions 2 and 3")
    tensor_count, kv_count = cursor.take("<Q"), cursor.take("<Q")
    metadata: dict[str, object] = {}
    for _ in range(kv_count):
        key = cursor.string()
        value = cursor.value(cursor.take("<I"))
        if value is not None:
            metadata[key] = value
    types = []
    for _ in range(tensor_count):
        cursor.string()  # tensor name
        dims = cursor.take("<I")
        cursor.at += 8 * dims  # the shape
        types.append((cursor.take("<I"), dims))
        cursor.take("<Q")  # offset of its data
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str):
        raise ValueError("no general.architecture entry")
    return GgufHeader(architecture, metadata, tuple(types))


# --- hashing, once per file version --------------------------------------------------------


def sha256_of(paths: Sequence[Path], memo: Path | None = None) -> str:
    """SHA-256 of the files' bytes, in order; with `memo` (a folder), computed once per version
    of the files (their paths, sizes and modification times) and remembered there."""
    known = remembered_sha256(paths, memo)
    if known is not None:
        return known
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as file:
            while block := file.read(1 << 22):
                digest.update(block)
    if memo is not None:
        remember_sha256(paths, digest.hexdigest(), memo)
    return digest.hexdigest()


def remembered_sha256(paths: Sequence[Path], memo: Path | None) -> str | None:
    """The remembered hash of these files as they are now, if any."""
    known = _read_hashes(memo).get(_stat_key(paths)) if memo is not None else None
    return known if isinstance(known, str) else None


def remember_sha256(paths: Sequence[Path], sha256: str, memo: Path) -> None:
    """Record the hash of these files as they are now, replacing what was remembered for
    earlier versions of them. Best effort: a lost race or a read-only cache costs a re-hash."""
    key = _stat_key(paths)
    hashes = {old: value for old, value in _read_hashes(memo).items() if _names(old) != _names(key)}
    hashes[key] = sha256
    try:
        memo.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=memo, prefix=f".{HASHES_FILE}-")
        with open(handle, "w", encoding="utf-8") as out:
            json.dump(hashes, out, indent=1)
        Path(name).replace(memo / HASHES_FILE)
    except OSError:
        pass


def _stat_key(paths: Sequence[Path]) -> str:
    """The files' identity as they are now: absolute paths, sizes, modification times."""
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
    return json.dumps(stats)


def _read_hashes(memo: Path | None) -> dict[str, object]:
    if memo is None:
        return {}
    try:
        hashes = json.loads((memo / HASHES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # none yet, or damaged: hash again
    return hashes if isinstance(hashes, dict) else {}


def _names(key: str) -> list[str]:
    """The file names in a key of _stat_key (empty for a key tpsearch did not write)."""
    try:
        return [str(entry[0]) for entry in json.loads(key)]
    except (ValueError, TypeError, IndexError, KeyError):
        return []


# --- conversion, once per file ---------------------------------------------------------------


def conversions(cache_root: Path) -> Path:
    """The folder of a model cache that holds its GGUF conversions."""
    return cache_root / "gguf"


def converted_folder(cache_root: Path, sha256: str) -> Path:
    return conversions(cache_root) / sha256[:16]


def is_conversion(folder: Path, cache_root: Path) -> bool:
    """Whether `folder` is a complete conversion in `cache_root`'s (a `converted_folder`)."""
    return folder.parent == conversions(cache_root) and is_complete(folder)


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


_scratch: Path | None = None


def scratch_cache() -> Path:
    """A model cache for this process only, removed at exit: where a GGUF is converted when the
    caller keeps no model cache (Python callers who pass none; the CLI always passes one)."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="tpsearch-models-"))
        atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    return _scratch


def check_architecture(header: GgufHeader, path: Path) -> None:
    """ModelLoadError unless transformers' GGUF loader maps this architecture to a decoder."""
    supported = supported_architectures()
    arch = header.architecture
    names = {arch, arch.replace("-", "_"), arch.replace("moe", "_moe")}
    if not names & supported:
        raise ModelLoadError(
            f"{path} holds a {arch!r} model, which transformers cannot load from GGUF (or is "
            f"no decoder-only transformer); supported: {', '.join(sorted(supported))}. Use "
            "the model's hub id or a save_pretrained folder instead"
        )


def supported_architectures() -> set[str]:
    """GGUF architectures transformers can load as decoder-only models (imports torch)."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES)
    try:  # newer transformers load a few architectures through a second path
        from transformers.integrations.gguf import GGUF_ARCHS

        names |= set(GGUF_ARCHS)
    except ImportError:
        pass
    return names - _NOT_DECODERS


def convert(
    gguf: Path,
    folder: Path,
    origin: Mapping[str, object],
    phase: Callable[[str], None] | None = None,
) -> Path:
    """Dequantize `gguf` into the save_pretrained folder `folder`, atomically; return it.

    The folder appears complete or not at all: it is written beside, under a temporary name, and
    renamed when its last file is in. `origin` is recorded in it, for `tpsearch models`.
    """
    header = read_header(gguf)
    check_architecture(header, gguf)
    dtype = "float32" if header.keeps_float32 else "bfloat16"
    if phase is not None:
        label = origin.get("model") or gguf.name
        phase(f"converting {label} from GGUF to {dtype} (once; kept in {folder.parent})")
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        _write_converted(gguf, temporary, dtype)
        record = {**origin, "file": str(gguf), "architecture": header.architecture, "dtype": dtype}
        (temporary / ORIGIN_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        (temporary / COMPLETE).write_text("", encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)  # a crashed conversion of the same file
        try:
            temporary.rename(folder)
        except OSError:
            if not is_complete(folder):  # else another process converted it meanwhile
                raise
    except OSError as error:
        raise ModelLoadError(
            f"cannot write the converted model to {folder.parent} ({first_line(error)}): free "
            "some disk space or point TPSEARCH_CACHE at a writable folder"
        ) from error
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


def _write_converted(gguf: Path, target: Path, dtype_name: str) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    options: dict[str, Any] = {}
    try:  # newer transformers can keep GGUF blocks packed; tpsearch wants plain weights
        from transformers import GgufConfig

        options["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:
        pass
    where, name = str(gguf.parent), gguf.name
    try:
        with _no_tensor_bar():
            model = AutoModel.from_pretrained(
                where, gguf_file=name, dtype=getattr(torch, dtype_name), **options
            )
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
    except (OSError, ValueError, KeyError, NotImplementedError) as error:
        raise ModelLoadError(
            f"transformers cannot load {gguf} ({first_line(error)}): use the model's hub id or "
            "a save_pretrained folder instead"
        ) from error
    # Loaded from GGUF, the model says it is quantized and refuses to be saved; its weights
    # are plain tensors now, so drop the marks and save it as the ordinary model it is.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


@contextlib.contextmanager
def _no_tensor_bar() -> Iterator[None]:
    """Silence the per-tensor bar of transformers' GGUF reader: it uses tqdm directly, so
    quiet_libraries cannot reach it, and the caller shows its own progress line instead."""
    import transformers.modeling_gguf_pytorch_utils as reader

    bar = getattr(reader, "tqdm", None)
    if bar is None:
        yield
        return
    reader.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        reader.tqdm = bar
