"""The collection's corrected vector space (`analysis.space`): fitted, stored and looked up.

The mean is stored in the `meta` table under `space`, with the fingerprint of the vectors it
was taken over, so it changes in the same transaction as the settings it belongs to and a
copied collection carries it. An index run refits it when there is none, when the vectors
are of other settings (`--reembed`), or when the vectors added since the fit, or the change
in their number, reach `REFIT_SHARE` of those it was fitted on: the mean of a collection
moves little when a few files change, and every score and threshold is read in this space,
so it should not shift with every edit. A collection indexed before spaces existed gets one
fitted on the fly by readers (not stored: readers do not write) until its next index run;
a long-lived reader (the warm server, MCP) keeps it until the database changes, instead of
reading every vector again at each query.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from tpsearch.analysis.space import VectorSpace, fit_space

if TYPE_CHECKING:
    from tpsearch.collection.store import Store

SPACE_KEY = "space"
REFIT_SHARE = 0.1  # refit after this share of the fitted vectors were added, or removed
FIT_SAMPLE = 200_000  # vectors the mean is taken over, at most (a seeded sample beyond)
# Below this many vectors there is no space: scores are raw cosines. The mean of a handful of
# vectors is mostly those vectors (two near-copies centred on their own mean point in
# opposite directions: cosine -1; a single chunk equals the mean).
MIN_VECTORS = 8
# Spaces fitted on the fly, per open database, with the database version they were fitted at.
_FITTED: weakref.WeakKeyDictionary[Store, tuple[tuple[int, int], VectorSpace]] = (
    weakref.WeakKeyDictionary()
)


def stored_space(store: Store) -> VectorSpace | None:
    """The stored space, if it belongs to the current vectors."""
    data = store.get_meta(SPACE_KEY)
    if not data or data.get("fingerprint") != store.get_meta("fingerprint"):
        return None
    space = VectorSpace.from_dict(data)
    return space if space is not None and space.dim == store.get_meta("dim") else None


def current_space(store: Store) -> VectorSpace | None:
    """The space scores are read in: the stored one, else one fitted now (not stored); None
    when no chunk has a vector. Call inside a snapshot."""
    space = stored_space(store)
    if space is not None:
        return space
    version = store.version()
    kept = _FITTED.get(store)
    if kept is not None and kept[0] == version:
        return kept[1]
    dim = store.get_meta("dim")
    if not dim or store.counts()["embedded"] < MIN_VECTORS:
        return None
    space = fit_space(_sample_vectors(store, dim))
    _FITTED[store] = (version, space)
    return space


def refresh_space(store: Store, added: int) -> bool:
    """After an index run that added `added` vectors: refit and store the space when it is
    missing, of other vectors, or due (see the module docstring). Returns whether it did."""
    dim, fingerprint = store.get_meta("dim"), store.get_meta("fingerprint")
    count = store.counts()["embedded"]
    if not dim or not fingerprint or count < MIN_VECTORS:
        if store.get_meta(SPACE_KEY) is not None:
            store.set_meta(**{SPACE_KEY: None})
        return False
    data: dict[str, Any] = store.get_meta(SPACE_KEY) or {}
    space = stored_space(store)
    since = int(data.get("added_since_fit", 0)) + added
    if space is not None:
        # The count at the fit, not the sample it was fitted on (capped at FIT_SAMPLE).
        then = int(data.get("vectors_at_fit", space.fitted_on))
        due = max(since, abs(count - then)) >= REFIT_SHARE * then
        if not due:
            if added:
                store.set_meta(**{SPACE_KEY: {**data, "added_since_fit": since}})
            return False
    fitted = fit_space(_sample_vectors(store, dim))
    record = {
        **fitted.to_dict(),
        "fingerprint": fingerprint,
        "added_since_fit": 0,
        "vectors_at_fit": count,
    }
    store.set_meta(**{SPACE_KEY: record})
    return True


def describe_space(store: Store) -> dict[str, Any] | None:
    """What `tpsearch status` shows of the space (no mean)."""
    data = store.get_meta(SPACE_KEY)
    if not data:
        return None
    return {
        "kind": data.get("kind"),
        "fitted_on": data.get("fitted_on"),
        "added_since_fit": data.get("added_since_fit", 0),
        "current": stored_space(store) is not None,
    }


def _sample_vectors(store: Store, dim: int) -> np.ndarray:
    ids = store.vector_ids()
    if len(ids) > FIT_SAMPLE:
        rng = np.random.default_rng(0)
        ids = np.sort(rng.choice(ids, size=FIT_SAMPLE, replace=False))
        return store.vectors_for(ids, dim)
    return store.all_vectors(dim)[1]
