"""Where a model comes from: a hub id, a local directory, a GGUF file, or a packaged model.

`resolve_model` turns what a user typed into what `from_pretrained` takes, and fails early,
with a message that says how to fix it, when the model cannot be had here (not cached while
offline, a gated or missing hub repository, a folder that is no checkpoint, a packaged model
that is not installed, a file that is not the one expected). A GGUF file (`./model.gguf`, a
folder holding one, or a packaged model such as `smollm2-135m`) is converted once into the
model cache and then read from there like a local folder (gguf_files.py, packaged.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tpsearch.engine import gguf_files, packaged
from tpsearch.engine.packaged import (
    origin,
    packaged_gguf,
    packaged_model,
    similar_packaged_name,
)
from tpsearch.errors import ModelLoadError, first_line


@dataclass(frozen=True)
class ModelSource:
    """A model as `from_pretrained` takes it, and how it is named where vectors are kept."""

    path: str  # a hub id or a local folder
    local_only: bool  # read local files only (a folder, or a hub model in the local cache)
    model_id: str  # hub id, absolute path, or packaged name: what collections record
    revision: str | None = None  # a GGUF's origin (SHA-256, or package and version), a folder's
    # weights (WEIGHTS_REVISION + SHA-256)
    gguf_file: str | None = None  # not converted yet: the GGUF file in `path` to read from


def resolve_model(
    model: str,
    model_cache: Path | None = None,
    phase: Callable[[str], None] | None = None,
    convert: bool = True,
) -> ModelSource:
    """Where to load `model` from. A GGUF is converted first when `convert` (else its tokenizer
    can be read straight from the file); without `model_cache`, into a folder of this process
    that is removed at exit, so a Python caller who wants it kept passes a `model_cache`."""
    named = packaged_model(model)
    found = _gguf_path(model) if named is None else None
    if named is None and found is None:
        path, local_only, model_id = locate(model)
        folder = Path(path)
        revision = weights_revision(folder, model_cache) if folder.is_dir() else None
        return ModelSource(path, local_only, model_id, revision)
    cache = model_cache if model_cache is not None else gguf_files.scratch_cache()
    if named is not None:
        gguf = packaged_gguf(named, cache, phase)
        sha, model_id, revision = named.sha256, named.name, origin(named)
    else:
        assert found is not None
        gguf = found
        if phase is not None and gguf_files.remembered_sha256([gguf], cache) is None:
            phase(f"checking the SHA-256 of {gguf.name} (once)")
        sha = gguf_files.sha256_of([gguf], memo=cache)
        model_id, revision = str(gguf.resolve()), f"sha256:{sha}"
    folder = gguf_files.converted_folder(cache, sha)
    if not gguf_files.is_complete(folder):
        if not convert:  # refuse what the conversion would refuse, before reading the file
            gguf_files.check_architecture(gguf_files.read_header(gguf), gguf)
            return ModelSource(str(gguf.parent), True, model_id, revision, gguf.name)
        record = {"model": model_id, "sha256": sha, "revision": revision}
        gguf_files.convert(gguf, folder, record, phase)
    return ModelSource(str(folder), True, model_id, revision)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
WEIGHTS_REVISION = "weights sha256:"  # a local folder's revision: the hash of its weight files


def weights_revision(folder: Path, memo: Path | None) -> str | None:
    """What identifies the weights in a save_pretrained folder: the SHA-256 of its weight files
    (remembered in `memo` by their paths, sizes and modification times, so each version is
    read once). Weights changed in place then give another fingerprint, and a collection
    refuses to mix their vectors with the old ones."""
    files = sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not files:
        return None
    return WEIGHTS_REVISION + gguf_files.sha256_of(files, memo=memo)


def _gguf_path(model: str) -> Path | None:
    """The GGUF file `model` names (a file, or a folder holding exactly one), else None."""
    path = Path(model).expanduser()
    if path.is_file():
        if gguf_files.is_gguf(path):
            return path
        if path.suffix.lower() == ".gguf":
            gguf_files.read_header(path)  # raises: says it is not a GGUF file
        raise ModelLoadError(
            f"{model} is a file but not a GGUF model: give a .gguf file, a folder written by "
            "save_pretrained, or a hub id such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        found = sorted(p for p in path.glob("*.gguf") if p.is_file())
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ModelLoadError(
                f"{model} holds {len(found)} GGUF files ({names}): name the one to use, e.g. "
                f"--model {path / found[0].name}"
            )
        return found[0] if found else None
    if model.lower().endswith(".gguf") and not path.exists():
        raise ModelLoadError(f"no GGUF file at {model}: check the path")
    return None


def locate(model: str) -> tuple[str, bool, str]:
    """(what to pass to from_pretrained, local files only?, the id to record) for a hub id or
    a save_pretrained folder."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{model} is a directory but holds no config.json and no .gguf file: point "
                "--model at a folder written by save_pretrained (config.json, weights, "
                "tokenizer files) or at a GGUF file"
            )
        return str(path.resolve()), True, str(path.resolve())
    if path.exists() or _looks_like_path(model):
        raise ModelLoadError(
            f"no model directory at {model}: give a local folder written by save_pretrained, "
            "a .gguf file, or a hub id such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    if "/" not in model:  # a bare name: more likely a packaged model than a hub id
        try:
            return model, _hub_files_cached(model), model
        except ModelLoadError as error:
            raise ModelLoadError(f"{error}; {_packaged_hint(model)}") from error
    return model, _hub_files_cached(model), model


def _packaged_hint(model: str) -> str:
    similar = similar_packaged_name(model)
    names = ", ".join(m.name for m in packaged.PACKAGED_MODELS)
    guess = f"did you mean {similar}? " if similar else ""
    return f"{guess}packaged models are {names} (`tpsearch models` lists them)"


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1


def how_to_fix(repo_id: str) -> str:
    """The second line of a "not downloaded" error: what to run, in one short line."""
    return (
        f"`hf download {repo_id}` once online, or --model a folder, a .gguf file or a "
        "packaged model"
    )


def _hub_files_cached(repo_id: str) -> bool:
    """True when the hub model is in the local cache; else check the hub can serve it."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    fix = how_to_fix(repo_id)
    try:
        if isinstance(huggingface_hub.try_to_load_from_cache(repo_id, "config.json"), str):
            return True
    except HFValidationError as error:
        raise ModelLoadError(f"{repo_id!r} is neither a local directory nor a hub id") from error
    if constants.HF_HUB_OFFLINE:
        raise ModelLoadError(
            f"model {repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set\n"
            + fix
        )
    try:
        huggingface_hub.model_info(repo_id, timeout=10)
    except RepositoryNotFoundError as error:
        raise ModelLoadError(
            f"no model {repo_id} on the Hugging Face hub (or it is private): check the id, "
            "or pass a local directory with --model ./path/to/model"
        ) from error
    except GatedRepoError as error:
        raise ModelLoadError(
            f"model {repo_id} is gated: accept its licence on huggingface.co and log in "
            "(`hf auth login`), or pass a local directory with --model ./path/to/model"
        ) from error
    except OfflineModeIsEnabled as error:
        message = f"model {repo_id} is not cached and hub access is off\n{fix}"
        raise ModelLoadError(message) from error
    except Exception as error:  # network errors come from several HTTP libraries
        raise ModelLoadError(
            f"model {repo_id} is not in the local Hugging Face cache and the hub cannot be "
            f"reached ({first_line(error)})\n" + fix
        ) from error
    return False
