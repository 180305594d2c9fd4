"""tpsearch: local semantic search with Token Prepending embeddings from a decoder LLM.

The public API is importable from here without importing torch: the heavy modules are loaded
the first time one of their names is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "TPEncoder": "tpsearch.engine.token_prepending",
    "ModelInputs": "tpsearch.engine.token_prepending",
    "EncoderSettings": "tpsearch.engine.settings",
    "Template": "tpsearch.engine.templates",
    "Encoder": "tpsearch.engine.encoder",
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
    from tpsearch.engine.encoder import Encoder
    from tpsearch.engine.settings import EncoderSettings
    from tpsearch.engine.templates import Template
    from tpsearch.engine.token_prepending import ModelInputs, TPEncoder
    from tpsearch.errors import TpsearchError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tpsearch' has no attribute {name!r}")
