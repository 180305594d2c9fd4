"""The corrected (centred) vector space: fitted by index runs, used by search and analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.corpus import using
from tests.fakes import AnisotropicEncoder, HashingEncoder, VaryingAnisotropicEncoder
from tpsearch.analysis import DedupeSettings
from tpsearch.analysis.space import VectorSpace, fit_space
from tpsearch.collection import Collection
from tpsearch.collection.analyses import PASSAGES_PER_FILE
from tpsearch.collection.vector_space import REFIT_SHARE, SPACE_KEY, stored_space

TOPICS = [
    "billing invoices payments refunds taxes",
    "firewall ports network routing packets",
    "gardening tomatoes soil compost watering",
    "astronomy telescopes planets orbits comets",
    "cooking pasta sauce garlic basil",
    "football league goals referee stadium",
    "painting canvas brushes pigments easel",
    "sailing wind knots harbour anchor",
]


def write_docs(folder: Path, count: int, start: int = 0) -> None:
    """One file per text, each on its own subject (the topics mixed with a serial word)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(start, start + count):
        words = TOPICS[n % len(TOPICS)].split()
        body = " ".join([*words, f"serial{n}", f"item{n}", *reversed(words), f"entry{n}"])
        text = f"# Note {n}\n\n{body}\n\n{body.upper()}\n"
        (folder / f"note{n:03d}.md").write_text(text, encoding="utf-8")


def test_centring_puts_unrelated_texts_near_zero_and_keeps_copies_at_one() -> None:
    encoder = AnisotropicEncoder()
    vectors = encoder.encode([*TOPICS, TOPICS[0]])
    raw = vectors @ vectors.T
    unrelated = raw[np.triu_indices(len(TOPICS), 1)]
    assert unrelated.min() > 0.8  # the failure on real models: everything looks alike
    space = fit_space(vectors)
    centred = space.apply(vectors)
    assert np.allclose(np.linalg.norm(centred, axis=1), 1.0, atol=1e-5)
    cosines = centred @ centred.T
    assert np.abs(np.median(cosines[np.triu_indices(len(TOPICS), 1)])) < 0.25
    assert cosines[0, len(TOPICS)] == pytest.approx(1.0, abs=1e-5)  # the identical text
    assert space.fitted_on == len(TOPICS) + 1


def test_a_vector_equal_to_the_mean_keeps_its_direction() -> None:
    one = np.eye(4, dtype=np.float32)[:1]
    space = fit_space(one)
    assert np.array_equal(space.apply(one), one)


def test_a_stored_space_round_trips_and_malformed_ones_are_ignored() -> None:
    space = fit_space(HashingEncoder().encode(TOPICS))
    again = VectorSpace.from_dict(space.to_dict())
    assert again is not None and np.allclose(again.mean, space.mean)
    assert again.fitted_on == len(TOPICS)
    for bad in ({}, {"kind": "whitened"}, {"kind": "centred", "mean": "x", "fitted_on": 1}):
        assert VectorSpace.from_dict(bad) is None
    with pytest.raises(ValueError):
        fit_space(np.zeros((0, 4), np.float32))


def test_index_runs_fit_the_space_and_refit_it_only_when_enough_changed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, 40)
    encoder = AnisotropicEncoder()
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(encoder))
        first = col.store.get_meta(SPACE_KEY)
        assert first["fitted_on"] == 40 and first["added_since_fit"] == 0
        assert col.status().space == {
            "kind": "centred",
            "fitted_on": 40,
            "added_since_fit": 0,
            "current": True,
        }
        write_docs(docs, 2, start=40)  # 5% more: the mean barely moves, keep it
        col.index(encoder_factory=using(encoder))
        kept = col.store.get_meta(SPACE_KEY)
        assert kept["mean"] == first["mean"] and kept["added_since_fit"] == 2
        write_docs(docs, 3, start=42)  # 5 added since the fit: >= 10% of 40
        assert REFIT_SHARE * 40 <= 5
        col.index(encoder_factory=using(encoder))
        refitted = col.store.get_meta(SPACE_KEY)
        assert refitted["fitted_on"] == 45 and refitted["added_since_fit"] == 0
        other = AnisotropicEncoder(model_id="test/other")
        col.index(encoder_factory=using(other), reembed=True)
        assert stored_space(col.store) is not None  # refitted for the new vectors
        assert col.store.get_meta(SPACE_KEY)["fingerprint"] == col.store.get_meta("fingerprint")


def test_semantic_scores_are_cosines_in_the_centred_space(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, 16)
    encoder = AnisotropicEncoder()
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(encoder))
        question = "compost for tomatoes"
        hits = col.query(question, mode="semantic", encoder_factory=using(encoder)).hits
        raw = col.query(
            question, mode="semantic", encoder_factory=using(encoder), corrected=False
        ).hits
        space = stored_space(col.store)
    assert space is not None and "gardening" in hits[0].snippet
    vectors = encoder.encode([question])
    stored = {h.chunk_id: h.score for h in raw}  # raw scores: plain cosines
    best = hits[0]
    assert stored[best.chunk_id] > 0.8  # raw: every chunk looks related
    assert hits[-1].score < 0.3 < best.score  # centred: unrelated chunks fall near zero
    with Collection.open(tmp_path / ".tpsearch") as col:
        chunk_vector = col.store.vectors_for(np.array([best.chunk_id]), vectors.shape[1])
    expected = float(space.apply(chunk_vector)[0] @ space.apply(vectors)[0])
    assert best.score == pytest.approx(expected, abs=1e-5)


def test_semantic_dedupe_groups_copies_not_neighbours_on_anisotropic_vectors(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    write_docs(docs, 24)
    copy = (docs / "note005.md").read_text(encoding="utf-8").replace("Note 5", "Note five")
    (docs / "note005 copy.md").write_text(copy, encoding="utf-8")
    encoder = AnisotropicEncoder()
    semantic = DedupeSettings(method="semantic")
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(encoder))
        raw = col.dedupe("file", semantic, corrected=False)
        centred = col.dedupe("file", semantic)
    grouped = sorted(m.item.path for g in raw.groups for m in g.members)
    assert len(grouped) > 2  # raw cosines: notes on one subject look like copies
    assert [sorted(m.item.path for m in g.members) for g in centred.groups] == [
        ["docs/note005 copy.md", "docs/note005.md"]
    ]


def test_files_are_clustered_with_k_chosen_on_a_bounded_share_of_each_files_passages(
    tmp_path: Path,
) -> None:
    """One long file (a changelog) must not decide k by its number of passages alone."""
    docs = tmp_path / "docs"
    write_docs(docs, 24)
    sections = [
        f"## Version 1.{n}\n\n" + " ".join(["release", "changelog", f"fixed{n}", "bump"] * 60)
        for n in range(120)
    ]
    (docs / "changelog.md").write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(AnisotropicEncoder()))
        passages = col.status().chunks
        report = col.cluster("file").report
    assert passages > 24 + 64  # the changelog alone has many passages
    assert report.note == f"k chosen on {24 + PASSAGES_PER_FILE} passages"
    assert report.k >= len(TOPICS)  # each subject is a topic, the changelog not the only split


def test_similar_passages_are_scored_and_found_in_the_centred_space(tmp_path: Path) -> None:
    """`similar` (MCP tool, the search screen's Ctrl-S) reads scores as queries do: a note on
    the same subject first, unrelated notes near 0, not at the raw 0.9 every pair shares."""
    docs = tmp_path / "docs"
    write_docs(docs, 24)
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(AnisotropicEncoder()))
        by_file = col.similar(path="docs/note003.md", k=23)
        chunk = by_file.hits[0].chunk_id
        by_chunk = col.similar(chunk_id=chunk, k=5)
    same_subject = {f"docs/note{n:03d}.md" for n in (11, 19)}  # 3 + 8, 3 + 16
    assert {h.path for h in by_file.hits[:2]} == same_subject
    assert max(h.score for h in by_file.hits if h.path not in same_subject) < 0.5
    assert by_chunk.hits and all(h.chunk_id != chunk for h in by_chunk.hits)
    assert by_chunk.hits[0].path in same_subject | {"docs/note003.md"}
    assert by_file.hits[0].title.startswith("Note ")  # titles as query hits have them
    assert by_chunk.hits[0].title.startswith("Note ")


def test_semantic_results_are_the_exact_centred_nearest_passages(tmp_path: Path) -> None:
    """FAISS holds raw vectors; the candidates it gives must still hold the centred top k
    (from raw candidates alone, a third of it was missed on vectors like these)."""
    rng = np.random.default_rng(1)
    vocabulary = [f"w{i}" for i in range(2000)]
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(1500):
        words = rng.choice(vocabulary, int(rng.integers(3, 40)), replace=False)
        (docs / f"d{n:04d}.txt").write_text(" ".join(words) + "\n", encoding="utf-8")
    encoder = VaryingAnisotropicEncoder()
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(encoder))
        ids, vectors = col.store.all_vectors(col.store.get_meta("dim"))
        space = stored_space(col.store)
        assert space is not None
        centred = space.apply(vectors)
        for _ in range(30):
            text = " ".join(rng.choice(vocabulary, int(rng.integers(2, 6)), replace=False))
            found = col.query(text, k=10, mode="semantic", encoder_factory=using(encoder))
            exact = centred @ space.apply(encoder.encode([text]))[0]
            best = {int(ids[i]) for i in np.argsort(-exact)[:10]}
            assert {hit.chunk_id for hit in found.hits} == best, text


def test_a_large_collection_is_not_refitted_by_runs_that_change_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mean of a large collection is taken over a sample; runs compare the collection's
    size with its size at the fit, not with the sample's (which made every run refit)."""
    import tpsearch.collection.vector_space as vector_space

    monkeypatch.setattr(vector_space, "FIT_SAMPLE", 20)
    docs = tmp_path / "docs"
    write_docs(docs, 40)
    encoder = AnisotropicEncoder()
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(encoder))
        first = col.store.get_meta(SPACE_KEY)
        assert first["fitted_on"] == 20 and first["vectors_at_fit"] == 40
        for _ in range(2):
            col.index(encoder_factory=using(encoder))
            assert col.store.get_meta(SPACE_KEY) == first


def test_a_collection_of_a_few_passages_is_scored_raw(tmp_path: Path) -> None:
    """Centred on the mean of two vectors, two near-copies point in opposite directions
    (cosine -1), and a single chunk is its own mean: below a few vectors, no centring."""
    docs = tmp_path / "docs"
    docs.mkdir()
    text = "billing invoices payments refunds taxes and the yearly report"
    (docs / "a.md").write_text(f"# Notes\n\n{text}\n", encoding="utf-8")
    (docs / "b.md").write_text(f"# Notes\n\n{text}, again\n", encoding="utf-8")
    encoder = AnisotropicEncoder()
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(encoder))
        assert col.store.get_meta(SPACE_KEY) is None and col.status().space is None
        found = col.query("billing refunds", mode="semantic", encoder_factory=using(encoder))
        report = col.dedupe("file", DedupeSettings(method="semantic"))
    assert [h.score > 0.3 for h in found.hits] == [True, True]
    assert [sorted(m.item.path for m in g.members) for g in report.groups] == [
        ["docs/a.md", "docs/b.md"]
    ]


def test_a_collection_without_a_stored_space_is_fitted_once_per_reader_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collections indexed before spaces existed get one fitted by readers; a warm server
    must not read every vector again at each query."""
    import tpsearch.collection.vector_space as vector_space

    docs = tmp_path / "docs"
    write_docs(docs, 20)
    encoder = AnisotropicEncoder()
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(encoder))
        col.store.set_meta(**{SPACE_KEY: None})  # as an older tpsearch left it
    fits: list[int] = []
    real_fit = vector_space.fit_space

    def counting(vectors: np.ndarray) -> VectorSpace:
        fits.append(len(vectors))
        return real_fit(vectors)

    monkeypatch.setattr(vector_space, "fit_space", counting)
    with Collection.locate(tmp_path) as reader:
        first = reader.query("topic 3", mode="semantic", encoder_factory=using(encoder)).hits
        again = reader.query("topic 3", mode="semantic", encoder_factory=using(encoder)).hits
        assert fits == [20] and [h.chunk_id for h in again] == [h.chunk_id for h in first]
        with Collection.locate(tmp_path) as writer:  # another process's change
            write_docs(docs, 1, start=20)
            writer.index(encoder_factory=using(encoder))
            writer.store.set_meta(**{SPACE_KEY: None})
        reader.query("topic 3", mode="semantic", encoder_factory=using(encoder))
        assert fits == [20, 21, 21]  # the index run's own fit (removed again), the reader's
