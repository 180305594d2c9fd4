"""tpsearch: local semantic search with Token Prepending embeddings from a decoder LLM.

The public API is importable from here without importing torch: the heavy modules are loaded
the first time one of their names is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "TPEncoder": "tpsearch.token_prepending",
    "ModelInputs": "tpsearch.token_prepending",
    "EncoderSettings": "tpsearch.config",
    "Template": "tpsearch.templates",
    "Encoder": "tpsearch.encoder",
    "Collection": "tpsearch.collection",
    "TpsearchError": "tpsearch.errors",
}

__all__ = [
    "Collection",
    "Encoder",
    "EncoderSettings",
    "ModelInputs",
    "TPEncoder",
    "Template",
    "TpsearchError",
    "__version__",
]

if TYPE_CHECKING:
    from tpsearch.collection import Collection
    from tpsearch.config import EncoderSettings
    from tpsearch.encoder import Encoder
    from tpsearch.errors import TpsearchError
    from tpsearch.templates import Template
    from tpsearch.token_prepending import ModelInputs, TPEncoder


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tpsearch' has no attribute {name!r}")
