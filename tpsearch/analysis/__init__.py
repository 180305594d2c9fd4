"""Pure analysis of a collection: duplicate groups and topic clusters.

Everything here takes plain records and arrays (`TextItem`, `Embeddings`) and returns
dataclasses; no database, no model, no printing. FAISS and datasketch are imported inside
the functions that use them, so importing this package stays cheap.
"""

from tpsearch.analysis.clustering import (
    Cluster,
    ClusterReport,
    ClusterSettings,
    Representative,
    cluster_items,
    parse_k,
    silhouette,
)
from tpsearch.analysis.duplicates import (
    DedupeReport,
    DedupeSettings,
    DuplicateGroup,
    DuplicateMember,
    choose_keeper,
    find_duplicates,
)
from tpsearch.analysis.items import Embeddings, TextItem, pool_by_owner
from tpsearch.analysis.labels import keywords_by_cluster
from tpsearch.analysis.lexical import lexical_pairs
from tpsearch.analysis.pairs import Pairs, exact_pairs, semantic_pairs
from tpsearch.analysis.projection import Projection, project_2d

__all__ = [
    "Cluster",
    "ClusterReport",
    "ClusterSettings",
    "DedupeReport",
    "DedupeSettings",
    "DuplicateGroup",
    "DuplicateMember",
    "Embeddings",
    "Pairs",
    "Projection",
    "Representative",
    "TextItem",
    "choose_keeper",
    "cluster_items",
    "exact_pairs",
    "find_duplicates",
    "keywords_by_cluster",
    "lexical_pairs",
    "parse_k",
    "pool_by_owner",
    "project_2d",
    "semantic_pairs",
    "silhouette",
]
