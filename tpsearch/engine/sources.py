"""Where a model comes from: a hub id (`Qwen/Qwen2.5-0.5B-Instruct`) or a local directory.

`locate` turns what a user typed into what `from_pretrained` takes, and fails early, with a
message that says how to fix it, when the model cannot be had here (not cached while offline,
a gated or missing hub repository, a folder that is no checkpoint).
"""

from __future__ import annotations

from pathlib import Path

from tpsearch.errors import ModelLoadError, first_line


def locate(model: str) -> tuple[str, bool, str]:
    """(what to pass to from_pretrained, local files only?, the id to record)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{model} is a directory but holds no config.json: point --model at a folder "
                "written by save_pretrained (config.json, weights, tokenizer files)"
            )
        return str(path.resolve()), True, str(path.resolve())
    if path.exists() or _looks_like_path(model):
        raise ModelLoadError(
            f"no model directory at {model}: give a local folder written by save_pretrained, "
            "or a hub id such as Qwen/Qwen2.5-0.5B-Instruct"
        )
    return model, _hub_files_cached(model), model


def _looks_like_path(model: str) -> bool:
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1


def how_to_fix(repo_id: str) -> str:
    return (
        f"download it once on a connected machine (`hf download {repo_id}`), or pass a local "
        "directory: --model ./path/to/model (a folder written by save_pretrained)"
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
            f"model {repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: "
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
        message = f"model {repo_id} is not cached and hub access is off: {fix}"
        raise ModelLoadError(message) from error
    except Exception as error:  # network errors come from several HTTP libraries
        raise ModelLoadError(
            f"model {repo_id} is not in the local Hugging Face cache and the hub cannot be "
            f"reached ({first_line(error)}): " + fix
        ) from error
    return False
