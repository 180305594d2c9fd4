"""The `.tpsearch/` folder: a SQLite database (the source of truth) and a FAISS cache.

`Collection` (in `facade.py`) is the API; the modules beside it each do one job: `sources`
and `scanning` find and read files, `chunking` cuts them, `embedding` and `indexing` turn them
into stored vectors, `search` answers queries, `store`/`schema` hold the data, `vector_index`
and `vector_cache` keep the FAISS copy, `locking` allows one writer, `status` tells what it
holds, `watching` re-indexes as files change, `passages` shows a hit in its file and finds
passages like it. The
collection knows the embedding engine only through the `Encoder` protocol
(`tpsearch.engine.encoder`).
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tpsearch.collection.facade import (
        INDEX_DIR_NAME,
        Collection,
        EncoderFactory,
        default_encoder_factory,
        find_index_dir,
    )
    from tpsearch.collection.status import CollectionStatus

__all__ = [
    "INDEX_DIR_NAME",
    "Collection",
    "CollectionStatus",
    "EncoderFactory",
    "default_encoder_factory",
    "find_index_dir",
]


def __getattr__(name: str) -> Any:
    """Names load on first use: importing one small module of the package (`visible`, for the
    CLI's output) does not import SQLite, sqlite-utils and the rest (~0.2 s of every command)."""
    if name == "CollectionStatus":
        from tpsearch.collection import status

        return status.CollectionStatus
    if name in __all__:
        from tpsearch.collection import facade

        return getattr(facade, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
