"""Queries: the three modes, filters, fusion, snippets, and the fallbacks users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus import failing_to_load, using, write_corpus
from tests.fakes import HashingEncoder
from tpsearch.collection import Collection
from tpsearch.collection.search import fts_expression, fuse, make_snippet, query_terms
from tpsearch.errors import ConfigError

ENCODER = HashingEncoder()


@pytest.fixture(scope="module")
def col(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("query")
    docs = write_corpus(root)
    (docs / "more").mkdir()
    (docs / "more" / "firewall.md").write_text(
        "# Firewall rules\n\nOpen the port in the firewall before starting the server.\n"
    )
    with Collection.locate(root, create=True) as opened:
        opened.index([docs], encoder_factory=using(ENCODER))
        yield opened


def ask(col: Collection, text: str, **options: object):  # type: ignore[no-untyped-def]
    return col.query(text, encoder_factory=using(ENCODER), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["hybrid", "semantic", "lexical"])
def test_every_mode_puts_the_matching_document_first(col: Collection, mode: str) -> None:
    result = ask(col, "rewrite the billing module in Rust", mode=mode)
    assert result.used == mode and result.notices == []
    assert result.hits[0].path == "docs/notes.txt"
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_hybrid_scores_reach_one_when_first_on_both_sides(col: Collection) -> None:
    best = ask(col, "billing module Rust invoices").hits[0]
    assert 0.9 < best.score <= 1.0  # first on both sides scores 1.0


def test_an_invalid_mode_lists_the_valid_ones(col: Collection) -> None:
    with pytest.raises(ConfigError, match="'hybrid', 'semantic', 'lexical'"):
        ask(col, "x", mode="fuzzy")


def test_k_limits_the_results(col: Collection) -> None:
    assert len(ask(col, "server port firewall", k=2).hits) == 2


def test_path_filter_uses_gitignore_style_patterns(col: Collection) -> None:
    for mode in ("hybrid", "semantic", "lexical"):
        hits = ask(col, "firewall port server", mode=mode, path="more/").hits
        assert {h.path for h in hits} == {"docs/more/firewall.md"}, mode
        hits = ask(col, "meeting budget", mode=mode, path="*.txt").hits
        assert {h.path for h in hits} == {"docs/notes.txt"}, mode
    assert ask(col, "firewall", path="nothing/matches/").hits == []


def test_an_invalid_path_pattern_is_a_clear_error(col: Collection) -> None:
    with pytest.raises(ConfigError, match="invalid --path pattern"):
        ask(col, "firewall", path="!")


def test_a_huge_k_returns_every_chunk_at_most(col: Collection) -> None:
    chunks = col.store.counts()["chunks"]
    for mode in ("hybrid", "semantic", "lexical"):
        hits = ask(col, "firewall port server", k=10**12, mode=mode).hits
        assert 0 < len(hits) <= chunks, mode


def test_min_score_drops_weak_results(col: Collection) -> None:
    everything = ask(col, "firewall port", mode="semantic")
    cut = everything.hits[1].score
    kept = ask(col, "firewall port", mode="semantic", min_score=cut).hits
    assert len(kept) == 2 and all(h.score >= cut for h in kept)


def test_files_mode_lists_each_file_once(col: Collection) -> None:
    hits = ask(col, "server port firewall items", files=True).hits
    paths = [h.path for h in hits]
    assert len(paths) == len(set(paths)) > 1


def test_snippets_show_and_mark_the_query_terms(col: Collection) -> None:
    hit = ask(col, "firewall", mode="lexical").hits[0]
    marked = {hit.snippet[a:b].lower() for a, b in hit.highlights}
    assert marked == {"firewall"}
    assert hit.heading in ("Installation guide > Troubleshooting", "Firewall rules")
    record = hit.to_dict()
    fields = {"path", "start_line", "end_line", "score", "snippet", "chunk_id", "heading", "title"}
    assert set(record) == fields


def test_query_syntax_is_just_text(col: Collection) -> None:
    for text in ['"unbalanced', "AND OR NOT", "items(*)", "NEAR(a b)", "-- DROP TABLE"]:
        ask(col, text, mode="lexical")  # no FTS5 syntax error reaches the user


def test_an_empty_query_is_refused(col: Collection) -> None:
    with pytest.raises(ConfigError, match="empty"):
        ask(col, "   ")


def test_when_the_model_cannot_load_queries_fall_back_to_keywords(col: Collection) -> None:
    with Collection.open(col.folder) as fresh:
        result = fresh.query("firewall", encoder_factory=failing_to_load)
    assert result.used == "lexical" and result.hits
    assert "cannot load" in result.notices[0] and "keyword" in result.notices[0]


def test_without_vectors_queries_are_lexical_and_say_so(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path)
    with Collection.locate(tmp_path, create=True) as col:
        with pytest.raises(Exception, match="keywords only"):
            col.index([docs], encoder_factory=failing_to_load)
        result = col.query("firewall", mode="semantic", encoder_factory=using(ENCODER))
    assert result.used == "lexical" and result.hits[0].path == "docs/guide.md"
    assert "no chunk has a vector yet" in result.notices[0]


def test_fusion_scores_each_side_against_its_best_and_leans_on_keywords() -> None:
    lexical = [(1, 8.0), (2, 4.0)]
    semantic = {1: 0.2, 2: 0.5, 3: 0.5, 4: -0.3}
    fused = dict(fuse(lexical, semantic, lexical_weight=0.7))
    assert fused[1] == pytest.approx(0.7 + 0.3 * 0.4)  # best keyword match, weak meaning
    assert fused[2] == pytest.approx(0.7 * 0.5 + 0.3)
    assert fused[3] == pytest.approx(0.3)  # found by meaning alone
    assert fused[4] == 0.0  # below an average pair of the collection: unrelated
    assert [i for i, _ in fuse(lexical, semantic)][:2] == [1, 2]
    assert fuse([(7, 3.0)], {7: 0.6}) == [(7, pytest.approx(1.0))]  # first on both sides


def test_fusion_does_not_punish_a_chunk_without_a_vector() -> None:
    fused = dict(fuse([(5, 2.0), (6, 1.0)], {6: 0.9, 9: 0.9}))
    assert fused[5] == 1.0  # pending: scored by keywords alone, as if the vectors agreed
    assert fused[6] == pytest.approx(0.7 * 0.5 + 0.3) and fused[9] == pytest.approx(0.3)


def test_query_terms_and_fts_expression() -> None:
    assert query_terms("How do I install the CLI?") == ["install", "cli"]
    assert query_terms("to be or not") == ["not"]
    assert query_terms("the") == ["the"]  # only stop words: keep them
    assert fts_expression(['say "hi"']) == '"say ""hi"""'


def test_snippet_windows_on_the_densest_part() -> None:
    text = "filler " * 100 + "the deploy step uses docker compose " + "filler " * 100
    snippet, spans = make_snippet(text, ["deploy", "docker"])
    assert "deploy step uses docker" in snippet and len(snippet) <= 225
    assert {snippet[a:b] for a, b in spans} == {"deploy", "docker"}


def test_chunks_waiting_for_vectors_are_still_found_and_counted(tmp_path: Path) -> None:
    docs = write_corpus(tmp_path)
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(ENCODER))
        (docs / "late.md").write_text("# Late\n\nA page about sourdough baking.\n")
        with pytest.raises(Exception, match="keywords only"):
            col.index(encoder_factory=failing_to_load)
        result = col.query("sourdough baking", encoder_factory=using(ENCODER))
    assert result.used == "hybrid" and result.hits[0].path == "docs/late.md"
    assert result.notices == [
        "1 of 4 chunks have no vector yet and are found by keywords only: run `tpsearch index` "
        "to embed them"
    ]


def test_a_query_overlapping_a_reembed_falls_back_to_keywords(tmp_path: Path) -> None:
    """The query loads its model while `index --reembed` drops the vectors it was set up for."""
    docs = write_corpus(tmp_path)
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(ENCODER))

    def reembed_starts_meanwhile(settings: object) -> HashingEncoder:
        other = HashingEncoder(model_id="test/other")
        with Collection.open(col.folder, write=True) as writer:
            writer.index(reembed=True, encoder_factory=using(other))
        return ENCODER

    with Collection.open(col.folder) as reader:
        result = reader.query("firewall", encoder_factory=reembed_starts_meanwhile)
    assert result.used == "lexical" and result.hits[0].path == "docs/guide.md"
    assert "changed while this query ran" in result.notices[0]


def test_a_query_never_searches_the_vectors_of_another_model(tmp_path: Path) -> None:
    """A --reembed with another model of the same dimension finished while the query loaded
    the old one: its query vector must not be compared with the new vectors."""
    docs = write_corpus(tmp_path)
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(ENCODER))

    def reembed_finishes_meanwhile(settings: object) -> HashingEncoder:
        other = HashingEncoder(dim=ENCODER.dim, model_id="test/other")
        with Collection.open(col.folder, write=True) as writer:
            writer.index(reembed=True, encoder_factory=using(other))
        return ENCODER

    with Collection.open(col.folder) as reader:
        result = reader.query(
            "firewall", mode="semantic", encoder_factory=reembed_finishes_meanwhile
        )
    assert result.used == "lexical" and "changed while this query ran" in result.notices[0]
