"""Clustering on hand-built vectors with known groups, and keyword labels from their text."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tpsearch.analysis import (
    ClusterSettings,
    Embeddings,
    TextItem,
    cluster_items,
    parse_k,
    project_2d,
    silhouette,
)
from tpsearch.analysis.labels import STOP_WORDS
from tpsearch.errors import ConfigError

TOPICS = {
    "database": "database sql query table index migration transaction rows",
    "security": "oauth token password login scopes authentication bearer hashing",
    "testing": "pytest fixture assert mock coverage client parametrize snapshot",
    "deploy": "docker container kubernetes server deployment replicas proxy uvicorn",
}
SIZES = (40, 30, 20, 10)  # distinct sizes: clusters must come largest first
FILLER = "the fastapi application is used with this and that"  # in every text


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def topic_corpus(
    dim: int = 24, seed: int = 0
) -> tuple[list[TextItem], Embeddings, dict[str, set[int]], dict[str, set[int]]]:
    """Items in four well-separated groups, their vectors, the true groups, and the three
    members of each group planted nearest its centre."""
    rng = np.random.default_rng(seed)
    words = random.Random(seed)
    centres = unit(rng.standard_normal((len(TOPICS), dim)))
    items, vectors, groups, nearest = [], [], {}, {}
    for (topic, vocabulary), centre, size in zip(TOPICS.items(), centres, SIZES, strict=True):
        groups[topic], nearest[topic] = set(), set()
        for n in range(size):
            id = len(items)
            spread = 0.02 if n < 3 else 0.12  # the first three sit right at the centre
            vectors.append(unit(centre + spread * rng.standard_normal(dim) / np.sqrt(dim) * 4))
            text = " ".join(words.sample(vocabulary.split(), 5)) + " " + FILLER
            items.append(TextItem(id, f"{topic}/{n}.md", text, len(text), 0.0))
            groups[topic].add(id)
            if n < 3:
                nearest[topic].add(id)
    ids = np.arange(len(items))
    return items, Embeddings(ids, np.stack(vectors)), groups, nearest


def test_given_k_recovers_the_planted_groups_largest_first() -> None:
    items, embeddings, groups, nearest = topic_corpus()
    report = cluster_items(items, embeddings, ClusterSettings(k=4))

    assert [c.size for c in report.clusters] == list(SIZES)
    for cluster, (topic, members) in zip(report.clusters, groups.items(), strict=True):
        assert set(cluster.member_ids) == members
        assert {r.item.id for r in cluster.representatives} == nearest[topic]
        assert cluster.representatives[0].similarity >= cluster.representatives[-1].similarity
        assert set(cluster.keywords[:3]) <= set(TOPICS[topic].split()), cluster.keywords
    assert report.silhouette is not None and report.silhouette > 0.5


def test_auto_k_picks_the_planted_number_of_groups_by_silhouette() -> None:
    items, embeddings, _, _ = topic_corpus()
    report = cluster_items(items, embeddings, ClusterSettings(k="auto", k_max=8))
    assert report.k == 4
    assert sorted(report.silhouette_by_k) == list(range(2, 9))
    assert max(report.silhouette_by_k, key=report.silhouette_by_k.__getitem__) == 4
    assert report.silhouette == pytest.approx(report.silhouette_by_k[4])


def test_same_collection_same_clusters_whatever_the_order() -> None:
    items, embeddings, _, _ = topic_corpus(seed=5)
    settings = ClusterSettings(k=3, seed=11)  # k=3 for 4 groups: the split itself is a choice
    first = cluster_items(items, embeddings, settings)
    shuffled = items[:]
    random.Random(3).shuffle(shuffled)
    again = cluster_items(shuffled, embeddings, settings)
    assert again.clusters == first.clusters
    np.testing.assert_array_equal(again.assignments, first.assignments)


def test_keywords_are_topic_words_never_stop_words() -> None:
    items, embeddings, _, _ = topic_corpus()
    report = cluster_items(items, embeddings, ClusterSettings(k=4, keywords=8))
    for cluster in report.clusters:
        assert len(cluster.keywords) == 8
        assert not set(cluster.keywords) & STOP_WORDS
        assert "fastapi" not in cluster.keywords[:5]  # in every text: says nothing about a topic


def test_pending_items_are_counted_and_left_out() -> None:
    items, embeddings, _, _ = topic_corpus()
    extra = TextItem(999, "new.md", "not embedded yet", 16, 0.0)
    report = cluster_items([*items, extra], embeddings, ClusterSettings(k=4))
    assert report.unembedded == 1 and report.clustered == len(items)
    assert 999 not in {i for c in report.clusters for i in c.member_ids}

    only_pending = cluster_items([extra], embeddings)
    assert only_pending.clusters == () and only_pending.unembedded == 1


def test_empty_single_and_identical_collections() -> None:
    empty = cluster_items([], Embeddings.empty(8))
    assert empty.clusters == () and empty.k == 0 and empty.silhouette is None

    one = TextItem(1, "a.md", "database sql query", 18, 0.0)
    single = cluster_items([one], Embeddings(np.array([1]), unit(np.ones((1, 8)))))
    assert single.k == 1 and single.clusters[0].member_ids == (1,) and single.silhouette is None

    same = [TextItem(n, f"{n}.md", "database sql query", 18, 0.0) for n in range(5)]
    identical = Embeddings(np.arange(5), unit(np.ones((5, 8))))
    auto = cluster_items(same, identical)
    assert auto.k == 1 and auto.clusters[0].size == 5 and "identical vectors" in (auto.note or "")
    given = cluster_items(same, identical, ClusterSettings(k=3))
    assert given.k == 1 and "lowered from 3" in (given.note or "")


def test_k_larger_than_the_collection_is_a_clear_error() -> None:
    items, embeddings, _, _ = topic_corpus()
    with pytest.raises(ConfigError, match="more than the 100 embedded items"):
        cluster_items(items, embeddings, ClusterSettings(k=101))


def test_silhouette_matches_its_definition() -> None:
    rng = np.random.default_rng(4)
    x = unit(rng.standard_normal((30, 5)))
    labels = rng.integers(0, 3, 30)
    labels[0] = 3  # a singleton scores 0
    distance = 1 - x.astype(np.float64) @ x.T.astype(np.float64)
    expected = []
    for i in range(30):
        own = [j for j in range(30) if labels[j] == labels[i] and j != i]
        if not own:
            expected.append(0.0)
            continue
        a = distance[i, own].mean()
        b = min(distance[i, labels == c].mean() for c in set(labels) if c != labels[i])
        expected.append((b - a) / max(a, b))
    assert silhouette(x, labels) == pytest.approx(np.mean(expected), abs=1e-7)


@pytest.mark.parametrize(("text", "k"), [("auto", "auto"), (" AUTO ", "auto"), ("7", 7)])
def test_parse_k(text: str, k: object) -> None:
    assert parse_k(text) == k


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"k": 0}, "at least 1"), ({"k": "many"}, "'auto'"), ({"k_min": 1}, "k range")],
)
def test_invalid_cluster_settings(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ClusterSettings(**settings)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'auto'"):
        parse_k("seven")


@pytest.mark.parametrize("k", [4, 2])
def test_projection_keeps_clusters_apart(k: int) -> None:
    items, embeddings, _, _ = topic_corpus()
    report = cluster_items(items, embeddings, ClusterSettings(k=k))
    projection = project_2d(embeddings, report)
    assert projection.points.shape == (len(items), 2) and projection.centres.shape == (k, 2)
    assert np.all(projection.points.std(axis=0) > 0)  # two real axes, also for k=2
    spread = max(
        np.linalg.norm(
            projection.points[report.assignments == c] - projection.centres[c], axis=1
        ).mean()
        for c in range(k)
    )
    gaps = [
        np.linalg.norm(projection.centres[a] - projection.centres[b])
        for a in range(k)
        for b in range(a + 1, k)
    ]
    assert min(gaps) > spread
    np.testing.assert_array_equal(project_2d(embeddings, report).points, projection.points)
