"""Topics of a collection: spherical k-means on the embeddings, labelled with keywords.

Vectors are unit length, so k-means with centroids renormalised after each step (FAISS
`spherical=True`) clusters by cosine. `k="auto"` tries every k in a range and keeps the one
whose mean silhouette most exceeds that of the same k on structureless data: a Gaussian sample
with the items' mean and covariance (the idea of the gap statistic, Tibshirani et al. 2001,
applied to silhouette). Plain silhouette favours k=2 on real embeddings, where any split of
one elongated cloud scores well: on the FastAPI docs (SmolLM2-135M, centred) it chose 2 at
file and chunk level; the corrected score chose 18 topics among the passages
(benchmarks/search_quality.py). Everything random takes `seed`, and items are ordered by id
first, so the same collection always gives the same clusters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from tpsearch.analysis._threads import threads_for
from tpsearch.analysis.items import Embeddings, TextItem, vector_key
from tpsearch.analysis.labels import keywords_by_cluster, label_of
from tpsearch.errors import ConfigError

Auto = Literal["auto"]

# FAISS's default training sample per centroid: plenty for centroids of unit vectors.
_POINTS_PER_CENTROID = 256


def parse_k(value: str) -> int | Auto:
    """`-k` as typed: a whole number of clusters, or "auto"."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"invalid k {value!r}: give a number of clusters, or 'auto'") from None


@dataclass(frozen=True)
class ClusterSettings:
    k: int | Auto = "auto"
    k_min: int = 2  # the range "auto" searches; silhouette is undefined for one cluster
    k_max: int = 20  # more topics than this no longer reads as an overview of a collection
    seed: int = 0  # k-means initialisation and the silhouette sample
    iterations: int = 25  # Lloyd iterations (the FAISS default; spherical k-means settles fast)
    # k-means runs, the best objective kept. Greedy k-means++ seeding makes one enough: it
    # recovered the topics of 20 of 20 test collections (sizes 40/30/20/10) where plain
    # k-means++ seeding recovered 9 and FAISS's random seeding about half.
    restarts: int = 1
    silhouette_sample: int = 2000  # silhouette is quadratic: 2000 points = 4M distances
    keywords: int = 5  # c-TF-IDF keywords kept per cluster
    representatives: int = 3  # members closest to the centroid, shown as examples

    def __post_init__(self) -> None:
        if self.k != "auto" and (isinstance(self.k, bool) or not isinstance(self.k, int)):
            raise ConfigError(f"invalid k {self.k!r}: give a number of clusters, or 'auto'")
        if isinstance(self.k, int) and self.k < 1:
            raise ConfigError(f"k must be at least 1, not {self.k}")
        if not 2 <= self.k_min <= self.k_max:
            raise ConfigError(f"the k range {self.k_min}..{self.k_max} needs 2 <= min <= max")
        if self.iterations < 1 or self.restarts < 1 or self.silhouette_sample < 3:
            raise ConfigError(
                "k-means needs >= 1 iteration and run, and silhouette >= 3 sample points"
            )


@dataclass(frozen=True)
class Representative:
    item: TextItem
    similarity: float  # cosine to the cluster centroid


@dataclass(frozen=True)
class Cluster:
    index: int  # 0 is the largest cluster
    keywords: tuple[str, ...]  # c-TF-IDF, best first
    size: int
    cohesion: float  # mean cosine of the members to the centroid: how tight the topic is
    representatives: tuple[Representative, ...]  # closest to the centroid first
    member_ids: tuple[int, ...]  # ascending

    @property
    def label(self) -> str:
        return label_of(self.keywords)


@dataclass(frozen=True, eq=False)
class ClusterReport:
    clusters: tuple[Cluster, ...]  # largest first
    settings: ClusterSettings
    silhouette: float | None  # mean silhouette of the chosen clustering on the sample
    silhouette_by_k: dict[int, float]  # every k tried by "auto" (empty for a given k)
    unembedded: int  # items left out because they have no vector yet
    note: str | None  # why k differs from what was asked, if it does
    point_ids: np.ndarray = field(repr=False)  # (m,) ids of the clustered items, ascending
    assignments: np.ndarray = field(repr=False)  # (m,) cluster index of each point
    centroids: np.ndarray = field(repr=False)  # (k, d) unit centroids, in cluster order
    # "auto": silhouette of structureless data for every k tried; k maximises the difference
    baseline_by_k: dict[int, float] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.clusters)

    @property
    def clustered(self) -> int:
        return len(self.point_ids)


def cluster_items(
    items: Sequence[TextItem],
    embeddings: Embeddings,
    settings: ClusterSettings | None = None,
    choose_on: np.ndarray | None = None,
) -> ClusterReport:
    """Cluster the embedded items; items without a vector are counted in `unembedded`.

    With `k="auto"` and `choose_on` (unit vectors of the items' parts: a collection's
    passages, for its files) k is chosen on those: a few hundred files are too few points
    for silhouette to see topics that thousands of passages show (FastAPI docs: k=2 chosen
    on 156 file vectors, 13 on up to 32 passages of each file, and the files clustered with
    k=13 form topics such as security/OAuth, dependencies, forms and files, testing).
    """
    settings = settings or ClusterSettings()
    ordered = sorted(items, key=lambda item: item.id)
    rows = embeddings.rows_for([item.id for item in ordered])
    clustered = [item for item, row in zip(ordered, rows, strict=True) if row >= 0]
    x = embeddings.vectors_at(rows[rows >= 0])
    unembedded = len(ordered) - len(clustered)
    if not clustered:
        return _report(
            [],
            x,
            np.empty(0, np.int64),
            np.empty((0, x.shape[1]), np.float32),
            settings,
            unembedded,
        )

    on_parts = settings.k == "auto" and choose_on is not None and len(choose_on) > len(x)
    if on_parts:
        assert choose_on is not None
        chosen, scores, baseline, note = _fit(choose_on, settings)
        distinct = _count_distinct(x, len(chosen))
        k = max(1, min(len(chosen), len(x) - 1, distinct))
        centroids = _kmeans(x, k, settings)
        why = f"only {distinct} distinct vectors" if distinct < len(x) - 1 else f"{len(x)} items"
        lowered = f": {len(chosen)}, lowered to {k} ({why})" if k < len(chosen) else ""
        note = note or f"k chosen on {len(choose_on)} passages{lowered}"
    else:
        centroids, scores, baseline, note = _fit(x, settings)
    report = _report(clustered, x, _nearest(x, centroids), centroids, settings, unembedded, note)
    if report.k < 2:
        quality = None
    elif scores and not on_parts:  # "auto" scored this clustering already, on the same sample
        quality = scores[len(centroids)]
    else:
        sample = _silhouette_sample(x, settings)
        quality = _silhouette(_cosine_distance(x[sample]), report.assignments[sample])
    return replace(report, silhouette=quality, silhouette_by_k=scores, baseline_by_k=baseline)


def _fit(
    x: np.ndarray, settings: ClusterSettings
) -> tuple[np.ndarray, dict[int, float], dict[int, float], str | None]:
    """(k, d) centroids to report, silhouette and baseline silhouette per k tried, and a note
    when k is not as asked."""
    distinct = _count_distinct(
        x, limit=max(settings.k_max, settings.k if settings.k != "auto" else 0)
    )
    if settings.k != "auto":
        if settings.k > len(x):
            raise ConfigError(
                f"k={settings.k} is more than the {len(x)} embedded items: "
                f"choose at most {len(x)}, or auto"
            )
        if settings.k > distinct:
            note = f"only {distinct} distinct vectors: k lowered from {settings.k}"
            return _kmeans(x, distinct, settings), {}, {}, note
        return _kmeans(x, settings.k, settings), {}, {}, None
    top = min(settings.k_max, len(x) - 1, distinct)
    if top < settings.k_min:
        why = "identical vectors" if distinct == 1 else f"{len(x)} items"
        note = f"one cluster: too few to compare k={settings.k_min} and up ({why})"
        return _kmeans(x, 1, settings), {}, {}, note
    # Every k is judged on the same rows, whose distances are computed once.
    sample = _silhouette_sample(x, settings)
    distance = _cosine_distance(x[sample])
    null = _structureless(x[sample], settings.seed)
    null_distance = _cosine_distance(null)
    scores: dict[int, float] = {}
    baseline: dict[int, float] = {}
    best, best_gain = None, -np.inf
    for k in range(settings.k_min, top + 1):
        centroids = _kmeans(x, k, settings)
        scores[k] = _silhouette(distance, _nearest(x[sample], centroids))
        baseline[k] = _silhouette(null_distance, _nearest(null, _kmeans(null, k, settings)))
        if scores[k] - baseline[k] > best_gain:  # strictly: a tie keeps the smaller k
            best, best_gain = centroids, scores[k] - baseline[k]
    assert best is not None
    return best, scores, baseline, None


def _structureless(x: np.ndarray, seed: int) -> np.ndarray:
    """Unit rows drawn from a Gaussian with the mean and covariance of `x`: the same spread,
    no topics. Random combinations of the centred rows have exactly that covariance."""
    rng = np.random.default_rng(seed + 1)
    mean = x.astype(np.float64).mean(axis=0)
    mixing = rng.standard_normal((len(x), len(x))) / np.sqrt(max(len(x) - 1, 1))
    drawn = mean + mixing @ (x.astype(np.float64) - mean)
    norms = np.linalg.norm(drawn, axis=1, keepdims=True)
    return (drawn / np.maximum(norms, 1e-12)).astype(np.float32)


def _kmeans(x: np.ndarray, k: int, settings: ClusterSettings) -> np.ndarray:
    """Spherical k-means: (k, d) unit centroids.

    Each run starts from greedy k-means++ seeds and trains on the same sample of at most
    `_POINTS_PER_CENTROID` rows per cluster (FAISS would subsample to that anyway); of
    `restarts` runs the one with the highest total cosine to the centroids is kept.
    """
    if k == 1:  # the mean direction; FAISS would only return one of the points
        centroid = x.astype(np.float64).mean(axis=0, keepdims=True)
        return (centroid / max(float(np.linalg.norm(centroid)), 1e-12)).astype(np.float32)
    import faiss

    rng = np.random.default_rng(settings.seed)
    size = min(len(x), k * _POINTS_PER_CENTROID)
    sample = x if size == len(x) else x[np.sort(rng.choice(len(x), size, replace=False))]
    best, best_objective = None, -np.inf
    for restart in range(settings.restarts):
        kmeans = faiss.Kmeans(
            x.shape[1],
            k,
            niter=settings.iterations,
            seed=settings.seed + restart,
            spherical=True,
            # FAISS warns below 39 points per centroid; small collections are fine.
            min_points_per_centroid=1,
            max_points_per_centroid=_POINTS_PER_CENTROID,
        )
        seeds = _kmeans_plus_plus(sample, k, rng)
        with threads_for(len(sample) * k * x.shape[1]):
            kmeans.train(sample, init_centroids=seeds)
        objective = float(np.asarray(kmeans.obj)[-1])  # summed cosine to the nearest centroid
        if objective > best_objective:
            best, best_objective = kmeans, objective
    assert best is not None
    return np.asarray(best.centroids, dtype=np.float32)


def _nearest(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the centroid with the highest cosine, for every row."""
    if len(centroids) == 1:
        return np.zeros(len(x), dtype=np.int64)
    import faiss

    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(centroids)
    with threads_for(len(x) * len(centroids) * x.shape[1]):
        _, nearest = index.search(x, 1)
    return nearest[:, 0].astype(np.int64)


def _kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeds (Arthur and Vassilvitskii, 2007; greedy as in scikit-learn).

    Each next seed is drawn with probability proportional to the squared distance to the
    nearest seed so far, which spreads seeds over the topics; of 2 + ln k such draws the
    one that brings the points closest to their seeds is kept, because many mid-distance
    points of an already seeded topic can outweigh a small unseeded one.
    """
    trials = 2 + int(np.log(k))
    seeds = np.empty((k, x.shape[1]), dtype=np.float32)
    seeds[0] = x[rng.integers(len(x))]
    distance = _squared_distance(x, seeds[0][None, :])[:, 0]
    for c in range(1, k):
        total = distance.sum()
        if total <= 0:  # every point sits on a seed already
            seeds[c] = x[rng.integers(len(x))]
            continue
        candidates = rng.choice(len(x), size=trials, p=distance / total)
        after = np.minimum(distance[:, None], _squared_distance(x, x[candidates]))  # (m, trials)
        chosen = int(np.argmin(after.sum(axis=0)))
        seeds[c] = x[candidates[chosen]]
        distance = after[:, chosen]
    return seeds


def _squared_distance(x: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """|a - b|^2 = 2 - 2 cos(a, b) between unit rows, (len(x), len(seeds))."""
    return np.maximum(2.0 - 2.0 * (x @ seeds.T).astype(np.float64), 0.0)


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette (Rousseeuw 1987) of unit rows with cosine distance.

    s(i) = (b - a) / max(a, b), a: mean distance to the rest of i's cluster, b: mean
    distance to the nearest other cluster; a singleton scores 0. Near 1: tight, separate
    clusters; near 0: overlapping ones. Quadratic in len(x): use a sample.
    """
    return _silhouette(_cosine_distance(x), labels)


def _cosine_distance(x: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - x.astype(np.float64) @ x.T.astype(np.float64), 0.0, 2.0)


def _silhouette(distance: np.ndarray, labels: np.ndarray) -> float:
    present, labels = np.unique(labels, return_inverse=True)
    if len(present) < 2:
        return -1.0  # undefined: never preferred over a real split
    n = len(labels)
    members = np.zeros((n, len(present)))
    members[np.arange(n), labels] = 1.0
    totals = distance @ members  # (n, k) summed distance to each cluster
    sizes = members.sum(axis=0)
    own = sizes[labels]
    a = totals[np.arange(n), labels] / np.maximum(own - 1, 1)
    mean_to = totals / sizes
    mean_to[np.arange(n), labels] = np.inf
    b = mean_to.min(axis=1)
    s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def _silhouette_sample(x: np.ndarray, settings: ClusterSettings) -> np.ndarray:
    """The rows silhouette is measured on: a fixed random sample, the same for every k."""
    size = min(len(x), settings.silhouette_sample)
    return np.sort(np.random.default_rng(settings.seed).choice(len(x), size, replace=False))


def _count_distinct(x: np.ndarray, limit: int) -> int:
    """Distinct rows, counting no further than `limit + 1` (enough to know k is possible)."""
    seen: set[bytes] = set()
    for row in x:
        seen.add(vector_key(row))
        if len(seen) > limit:
            break
    return len(seen)


def _report(
    items: Sequence[TextItem],
    x: np.ndarray,
    assignments: np.ndarray,
    centroids: np.ndarray,
    settings: ClusterSettings,
    unembedded: int,
    note: str | None = None,
) -> ClusterReport:
    """Clusters in a canonical order (largest first), with keywords and representatives."""
    sizes = np.bincount(assignments, minlength=len(centroids))
    first_row = np.full(len(centroids), len(assignments))
    np.minimum.at(first_row, assignments, np.arange(len(assignments)))
    # Largest first, ties by the smallest member id; a centroid k-means left empty is dropped.
    used = [int(c) for c in np.lexsort((first_row, -sizes)) if sizes[c] > 0]
    renumber = np.full(len(centroids), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    assignments = renumber[assignments]
    centroids = centroids[used]
    cosine = np.einsum("ij,ij->i", x, centroids[assignments]) if len(x) else np.empty(0)
    keywords = keywords_by_cluster(
        [i.text for i in items], assignments, len(used), settings.keywords
    )
    clusters = []
    for c in range(len(used)):
        rows = np.flatnonzero(assignments == c)
        closest = rows[np.lexsort((rows, -cosine[rows]))][: settings.representatives]
        clusters.append(
            Cluster(
                index=c,
                keywords=keywords[c],
                size=len(rows),
                cohesion=float(cosine[rows].mean()),
                representatives=tuple(
                    Representative(items[int(r)], float(cosine[r])) for r in closest
                ),
                member_ids=tuple(items[int(r)].id for r in rows),
            )
        )
    return ClusterReport(
        clusters=tuple(clusters),
        settings=settings,
        silhouette=None,
        silhouette_by_k={},
        unembedded=unembedded,
        note=note,
        point_ids=np.array([i.id for i in items], dtype=np.int64),
        assignments=assignments,
        centroids=centroids,
    )
