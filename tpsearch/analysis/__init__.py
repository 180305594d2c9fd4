"""Pure analysis of a collection: duplicate groups and topic clusters.

Everything here takes plain records and arrays (`TextItem`, `Embeddings`) and returns
dataclasses; no database, no model, no printing. FAISS and datasketch are imported inside
the functions that use them, so importing this package stays cheap.
"""

from tpsearch.analysis.duplicates import (
    DedupeReport,
    DedupeSettings,
    DuplicateGroup,
    DuplicateMember,
    choose_keeper,
    find_duplicates,
)
from tpsearch.analysis.items import Embeddings, TextItem, pool_by_owner
from tpsearch.analysis.lexical import lexical_pairs
from tpsearch.analysis.pairs import Pairs, exact_pairs, semantic_pairs

__all__ = [
    "DedupeReport",
    "DedupeSettings",
    "DuplicateGroup",
    "DuplicateMember",
    "Embeddings",
    "Pairs",
    "TextItem",
    "choose_keeper",
    "exact_pairs",
    "find_duplicates",
    "lexical_pairs",
    "pool_by_owner",
    "semantic_pairs",
]
