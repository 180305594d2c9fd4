"""Which encoder settings a collection's vectors depend on, and the check that keeps vectors of
different settings apart.

A small module of its own so that `collection`, `indexing`, `embedding` and `search` can all
use it without importing each other.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from tpsearch.engine.settings import EncoderSettings
from tpsearch.errors import CollectionError

if TYPE_CHECKING:
    from tpsearch.engine.encoder import Encoder

# Settings that change how fast vectors come, not what they are: free to differ between runs,
# and not stored (a collection indexed on a GPU can be queried on a laptop). With them the
# permissions of the person running the command: `trust_remote_code` runs code from the model
# folder, so only a flag or the environment may turn it on, never a collection (collections are
# copied with repositories and unpacked from archives).
RUNTIME_FIELDS = frozenset(
    {
        "device",
        "prefix_cache",
        "padding_side",
        "calibration_file",
        "model_cache",
        "trust_remote_code",
    }
)


def storable(settings: EncoderSettings) -> dict[str, Any]:
    """The settings to keep with the vectors: everything but the runtime-only fields."""
    defaults = EncoderSettings()
    keep = {name: getattr(defaults, name) for name in RUNTIME_FIELDS}
    return dataclasses.replace(settings, **keep).to_dict()


def from_stored(data: dict[str, Any]) -> EncoderSettings:
    """Stored settings, without any runtime field: a collection written by an older tpsearch
    (or by hand) may hold `trust_remote_code: true`, which must not turn it on."""
    return EncoderSettings.from_dict({k: v for k, v in data.items() if k not in RUNTIME_FIELDS})


def changed_fields(stored: EncoderSettings, wanted: EncoderSettings) -> list[str]:
    """'name: old -> new' for every setting that changes vectors."""
    return [
        f"{f.name}: {getattr(stored, f.name)!r} -> {getattr(wanted, f.name)!r}"
        for f in dataclasses.fields(EncoderSettings)
        if f.name not in RUNTIME_FIELDS and getattr(stored, f.name) != getattr(wanted, f.name)
    ]


def gives_vectors(encoder: Encoder, fingerprint: str) -> bool:
    """Whether `encoder` makes the vectors of that fingerprint (now or as an older tpsearch
    named them)."""
    return fingerprint in (encoder.fingerprint, *getattr(encoder, "former_fingerprints", ()))


def check_same_vectors(stored_fingerprint: str | None, encoder: Encoder) -> None:
    """Refuse an encoder whose vectors would not match the ones stored (None: none stored).
    A fingerprint an older tpsearch gave the same encoder is accepted (a collection's next
    index run records the current one)."""
    if stored_fingerprint is not None and not gives_vectors(encoder, stored_fingerprint):
        raise CollectionError(
            f"the model now gives other vectors than this collection holds (fingerprint "
            f"{encoder.fingerprint}, collection {stored_fingerprint}): did the model files "
            "change? Run `tpsearch index --reembed` to re-embed every chunk"
        )
