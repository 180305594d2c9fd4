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
