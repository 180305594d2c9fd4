"""What models this machine has: packaged models (installed or not) and the model cache.

For `tpsearch models`. Listing reads package metadata, GGUF headers and config.json files
only: no weights are loaded and torch is not imported, so it answers at once. Installing a
packaged model runs exactly the pip command the README gives, in the running interpreter; no
code from a model package is ever imported or run by tpsearch itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tpsearch.engine import packaged
from tpsearch.engine.gguf_files import (
    COMPLETE,
    ORIGIN_FILE,
    conversions,
    converted_folder,
    read_header,
)
from tpsearch.engine.packaged import (
    PackagedModel,
    installed_version,
    packaged_model,
    similar_packaged_name,
)
from tpsearch.errors import ConfigError, ModelLoadError


@dataclass(frozen=True)
class PackagedStatus:
    """One packaged model as this machine has it."""

    name: str  # what --model takes
    title: str
    package: str
    version: str | None  # installed version; None: not installed
    size_bytes: int  # of its installed GGUF file(s)
    licence: str
    maintainer: str
    layers: int | None  # from the converted copy's config.json or the GGUF header
    hidden: int | None
    converted: str | None  # the converted folder in the model cache, once made
    install: str  # the pip command that installs it
    note: str  # why that command

    @property
    def installed(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class CachedCopy:
    """A folder in the model cache: a converted GGUF, a quantized copy, or an assembled file."""

    kind: str  # "converted GGUF", "4bit copy", "8bit copy", "assembled GGUF"
    model: str  # the model it holds (packaged name, file path, or the folder's name)
    path: str
    size_bytes: int
    detail: str  # e.g. "llama, bfloat16"


@dataclass(frozen=True)
class ModelCatalog:
    packaged: list[PackagedStatus]
    cached: list[CachedCopy]
    cache: str | None  # the model cache folder looked at

    def to_dict(self) -> dict[str, object]:
        return {
            "cache": self.cache,
            "packaged": [{**vars(p), "installed": p.installed} for p in self.packaged],
            "cached": [vars(c) for c in self.cached],
        }


def list_models(model_cache: Path | None) -> ModelCatalog:
    """The packaged models and the contents of `model_cache` (nothing is loaded or written)."""
    cached = _cached_copies(model_cache) if model_cache is not None else []
    models = [_packaged_status(model, model_cache) for model in packaged.PACKAGED_MODELS]
    return ModelCatalog(models, cached, str(model_cache) if model_cache is not None else None)


def _packaged_status(model: PackagedModel, cache: Path | None) -> PackagedStatus:
    version = installed_version(model.package) or installed_version(model.parts[0][0])
    files = _installed_parts(model)
    if len(files) < len(model.parts):
        version = None  # a part package is missing: it cannot be used as it is
    folder = converted_folder(cache, model.sha256) if cache is not None else None
    converted = folder if folder is not None and (folder / COMPLETE).is_file() else None
    layers, hidden = _shape(converted, files[0] if files else None)
    return PackagedStatus(
        name=model.name,
        title=model.title,
        package=model.package,
        version=version,
        size_bytes=sum(path.stat().st_size for path in files),
        licence=model.licence,
        maintainer=model.maintainer,
        layers=layers,
        hidden=hidden,
        converted=str(converted) if converted is not None else None,
        install=model.pip_command,
        note=model.note,
    )


def _installed_parts(model: PackagedModel) -> list[Path]:
    import importlib.metadata

    found = []
    for distribution, relative in model.parts:
        try:
            path = Path(str(importlib.metadata.distribution(distribution).locate_file(relative)))
        except importlib.metadata.PackageNotFoundError:
            continue
        if path.is_file():
            found.append(path)
    return found


def _shape(converted: Path | None, gguf: Path | None) -> tuple[int | None, int | None]:
    """(layers, hidden size) from a converted config.json, else from the GGUF's header (the
    first part of a split file holds the whole header)."""
    if converted is not None:
        try:
            config = json.loads((converted / "config.json").read_text(encoding="utf-8"))
            return int(config["num_hidden_layers"]), int(config["hidden_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if gguf is not None:
        try:
            header = read_header(gguf)
            return header.layers, header.hidden
        except ModelLoadError:
            pass
    return None, None


def _cached_copies(cache: Path) -> list[CachedCopy]:
    if not cache.is_dir():
        return []
    copies: list[CachedCopy] = []
    names: dict[str, str] = {}  # converted folder name -> the model it holds
    for folder in sorted(conversions(cache).glob("*")):
        if (folder / COMPLETE).is_file():
            origin = _read_json(folder / ORIGIN_FILE)
            model = str(origin.get("model") or folder.name)
            names[folder.name] = model
            detail = f"{origin.get('architecture', '?')}, {origin.get('dtype', '?')}"
            copies.append(CachedCopy("converted GGUF", model, str(folder), _size(folder), detail))
    for path in sorted((cache / "packaged").glob("*.gguf")):
        model = path.name.rsplit("-", 1)[0]
        copies.append(CachedCopy("assembled GGUF", model, str(path), _size(path), "from parts"))
    for folder in sorted(cache.glob("*-*bit-*")):
        if not (folder / COMPLETE).is_file():
            continue
        source, precision, _ = folder.name.rsplit("-", 2)
        model = names.get(source, source)
        copies.append(CachedCopy(f"{precision} copy", model, str(folder), _size(folder), ""))
    return copies


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- installing -----------------------------------------------------------------------------


def install_command(name: str) -> list[str]:
    """The exact command that installs the packaged model `name` into this interpreter."""
    model = packaged_model(name)
    if model is None:
        similar = similar_packaged_name(name)
        hint = f"did you mean {similar}? " if similar else ""
        names = ", ".join(m.name for m in packaged.PACKAGED_MODELS)
        raise ConfigError(f"no packaged model {name!r}: {hint}choose one of {names}")
    return [sys.executable, "-m", "pip", "install", *model.install]


def install(name: str) -> int:
    """Run `install_command(name)` (pip's own output goes to the terminal); its exit code."""
    return subprocess.run(install_command(name), check=False).returncode
