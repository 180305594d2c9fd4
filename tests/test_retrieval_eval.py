"""`tpsearch eval retrieval`: ranking metrics, the judged-queries reader, the command, the data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.corpus import failing_to_load, using, write_corpus
from tests.fakes import HashingEncoder
from tpsearch.analysis.ranking import (
    RankingScores,
    first_relevant_place,
    mean_scores,
    ndcg_at,
    recall_at,
    reciprocal_rank,
    score_ranking,
)
from tpsearch.cli import app
from tpsearch.collection.retrieval_eval import match_paths, parse_modes, read_judged
from tpsearch.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
FASTAPI_DOCS = REPO / "data" / "fastapi-docs"
FASTAPI_QUERIES = REPO / "data" / "retrieval" / "fastapi-queries.tsv"


# --- metrics ---------------------------------------------------------------------------------


def test_one_relevant_item_in_third_place() -> None:
    ranked = ["a", "b", "c", "d", "e"]
    scores = score_ranking(ranked, {"c"})
    assert scores == RankingScores(
        recall_1=0.0, recall_5=1.0, recall_10=1.0, mrr_10=1 / 3, ndcg_10=0.5
    )
    assert first_relevant_place(ranked, {"c"}) == 3


def test_several_relevant_items_one_never_ranked() -> None:
    ranked = ["a", "b", "c", "d", "e", "f"]
    relevant = {"a", "f", "z"}
    assert recall_at(ranked, relevant, 1) == pytest.approx(1 / 3)
    assert recall_at(ranked, relevant, 5) == pytest.approx(1 / 3)
    assert recall_at(ranked, relevant, 10) == pytest.approx(2 / 3)
    assert reciprocal_rank(ranked, relevant) == 1.0
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranked, relevant) == pytest.approx((1 + 1 / math.log2(7)) / ideal)


def test_a_perfect_ranking_scores_one_everywhere_but_recall_at_one() -> None:
    scores = score_ranking(["a", "b", "x"], {"a", "b"})
    assert (scores.recall_1, scores.recall_5, scores.mrr_10, scores.ndcg_10) == (
        0.5,
        1.0,
        1.0,
        pytest.approx(1.0),
    )


def test_a_repeated_item_keeps_its_first_place() -> None:
    ranked = ["x", "x", "x", "a"]  # e.g. chunks of one file: "a" is the second file
    assert reciprocal_rank(ranked, {"a"}) == 0.5
    assert recall_at(ranked, {"a"}, 1) == 0.0
    assert first_relevant_place(ranked, {"a"}) == 2


def test_nothing_relevant_in_the_first_ten() -> None:
    ranked = [f"n{i}" for i in range(10)] + ["a"]
    scores = score_ranking(ranked, {"a"})
    assert scores == RankingScores(0.0, 0.0, 0.0, 0.0, 0.0)
    assert first_relevant_place(ranked, {"a"}) == 11
    assert first_relevant_place([], {"a"}) is None


def test_means_weigh_each_query_the_same() -> None:
    first = RankingScores(1.0, 1.0, 1.0, 1.0, 1.0)
    second = RankingScores(0.0, 0.5, 1.0, 0.25, 0.5)
    assert mean_scores([first, second]) == RankingScores(0.5, 0.75, 1.0, 0.625, 0.75)


def test_a_query_without_relevant_items_cannot_be_scored() -> None:
    with pytest.raises(DataError, match="at least one relevant"):
        score_ranking(["a"], set())
    with pytest.raises(DataError, match="no query"):
        mean_scores([])


def test_modes_are_one_or_all() -> None:
    assert parse_modes("all") == ("lexical", "semantic", "hybrid")
    assert parse_modes("semantic") == ("semantic",)
    with pytest.raises(ConfigError, match="'lexical', 'semantic', 'hybrid', 'all'"):
        parse_modes("fuzzy")


# --- the reader ------------------------------------------------------------------------------


def test_reading_a_judged_file(tmp_path: Path) -> None:
    path = tmp_path / "judged" / "queries.tsv"
    path.parent.mkdir()
    path.write_text(
        "# a comment\n"
        "# root: ../pages\n"
        "\n"
        "where is the firewall\tguide.md\n"
        "billing in rust\t./notes.txt\tsub\\api.md\tnotes.txt\r\n",
        encoding="utf-8",
    )
    judged = read_judged(path)
    assert [q.text for q in judged.queries] == ["where is the firewall", "billing in rust"]
    assert judged.queries[1].relevant == ("notes.txt", "sub/api.md")  # normalised, once each
    assert judged.queries[1].line == 5
    assert judged.root == tmp_path / "pages"
    assert judged.skipped == 0


def test_the_root_defaults_to_the_judged_files_folder(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("a question\tdoc.md\n", encoding="utf-8")
    assert read_judged(path).root == tmp_path


def test_malformed_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text(
        "good question\tdoc.md\n"
        "a query with no tab and no path\n"
        "\tdoc.md\n"
        "a query whose only path is empty\t \n"
        "another good one\tdoc.md\tother.md\n",
        encoding="utf-8",
    )
    judged = read_judged(path)
    assert len(judged) == 2
    assert (judged.skipped, judged.skipped_lines) == (3, (2, 3, 4))


def test_a_file_of_nothing_but_malformed_lines_says_what_to_write(tmp_path: Path) -> None:
    path = tmp_path / "q.tsv"
    path.write_text("just words\nmore words\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no judged queries found \(2 malformed.*query<TAB>path"):
        read_judged(path)


def test_a_missing_or_unreadable_judged_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_judged(tmp_path / "absent.tsv")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("caf\xe9\tdoc.md\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_judged(latin)


# --- matching judged paths to the collection's ------------------------------------------------


def test_judged_paths_match_exactly_or_by_their_last_segments(tmp_path: Path) -> None:
    root = tmp_path / "data" / "docs"
    # Indexed from the parent folder: the exact relative path is known.
    stored = ["data/docs/index.md", "data/docs/sub/index.md", "data/other/index.md"]
    found = match_paths(["index.md", "sub/index.md"], root, tmp_path, stored)
    assert found == {
        "index.md": frozenset({"data/docs/index.md"}),
        "sub/index.md": frozenset({"data/docs/sub/index.md"}),
    }
    # A copy of the same folder indexed elsewhere: matched by "docs/..." then by the path.
    elsewhere = ["../copy/docs/index.md", "../copy/docs/sub/index.md", "../copy/docs/a.md"]
    found = match_paths(["index.md", "a.md", "gone.md"], root, tmp_path / "x", elsewhere)
    assert found["index.md"] == frozenset({"../copy/docs/index.md"})
    assert found["a.md"] == frozenset({"../copy/docs/a.md"})
    assert found["gone.md"] == frozenset()


# --- the command, end to end on a small real collection --------------------------------------


@pytest.fixture
def project(project: Path) -> Path:
    """conftest's project, with judged queries about its corpus."""
    (project / "judged.tsv").write_text(
        "# root: docs\n"
        "firewall refuses connections on the port\tguide.md\n"
        "rewrite billing in Rust\tnotes.txt\n"
        "bearer tokens for the JSON endpoints\tapi.md\n",
        encoding="utf-8",
    )
    return project


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_lexical_finds_the_file_whose_words_the_query_uses(project: Path) -> None:
    assert run("index", "docs").exit_code == 0
    result = run("eval", "retrieval", "judged.tsv", "--mode", "lexical")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    lexical = next(line for line in rows if line.startswith("lexical"))
    assert lexical.split() == ["lexical", "3", "1.000", "1.000", "1.000", "1.000", "1.000"]
    assert "R@1" in result.stdout and "nDCG@10" in result.stdout
    assert not any(line.startswith(("semantic", "hybrid")) for line in rows)
    assert all(len(line) <= 80 for line in rows)
    assert result.stderr == ""


def test_json_gives_each_querys_places(project: Path) -> None:
    run("index", "docs")
    result = run("eval", "retrieval", "judged.tsv", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["modes"]) == {"lexical", "semantic", "hybrid"}
    assert report["queries"] == 3 and report["missing"] == []
    lexical = report["modes"]["lexical"]
    assert lexical["available"] and lexical["MRR@10"] == 1.0
    first = lexical["per_query"][0]
    assert first["query"] == "firewall refuses connections on the port"
    assert first["relevant"] == {"guide.md": 1}
    assert first["top"][0] == "docs/guide.md"
    assert report["modes"]["semantic"]["available"]  # the fake encoder gave vectors


def test_a_mode_without_vectors_is_reported_unavailable(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tpsearch.collection.facade.default_encoder_factory", failing_to_load)
    assert run("index", "docs").exit_code != 0  # the scan is saved, the model does not load
    result = run("eval", "retrieval", "judged.tsv")
    assert result.exit_code == 0, result.output
    assert "semantic unavailable: no chunk has a vector yet" in result.stdout
    assert "hybrid unavailable" in result.stdout
    lexical = next(line for line in result.stdout.splitlines() if line.startswith("lexical"))
    assert lexical.split()[1] == "3"
    report = json.loads(run("eval", "retrieval", "judged.tsv", "--json").stdout)
    assert report["modes"]["semantic"]["available"] is False
    assert report["modes"]["semantic"]["per_query"] == []


def test_judged_paths_missing_from_the_collection_are_warned_about(project: Path) -> None:
    run("index", "docs")
    (project / "judged.tsv").write_text(
        "firewall port\tguide.md\tremoved-page.md\nno tab here\n", encoding="utf-8"
    )
    result = run("eval", "retrieval", "judged.tsv", "--root", "docs", "--mode", "lexical")
    assert result.exit_code == 0, result.output
    assert "1 judged paths are in no file of the collection (removed-page.md)" in result.stderr
    assert "skipped 1 malformed lines (2)" in result.stderr
    lexical = next(line for line in result.stdout.splitlines() if line.startswith("lexical"))
    # Found first, but the missing page can never be found: recall halves, MRR does not.
    assert lexical.split()[2:6] == ["0.500", "0.500", "0.500", "1.000"]


def test_a_bad_judged_file_is_one_red_line(project: Path) -> None:
    run("index", "docs")
    result = run("eval", "retrieval", "absent.tsv")
    assert result.exit_code == 2 and "no such file: absent.tsv" in result.stderr
    bad_mode = run("eval", "retrieval", "judged.tsv", "--mode", "fuzzy")
    assert bad_mode.exit_code == 2 and "'all'" in bad_mode.stderr


# --- the shipped judged queries ---------------------------------------------------------------


def test_the_fastapi_judged_queries_name_pages_that_exist() -> None:
    judged = read_judged(FASTAPI_QUERIES)
    assert judged.root == FASTAPI_DOCS
    assert judged.skipped == 0
    assert len(judged) >= 50
    assert all(query.relevant for query in judged.queries)
    missing = [p for q in judged.queries for p in q.relevant if not (FASTAPI_DOCS / p).is_file()]
    assert missing == []
    assert len({q.text for q in judged.queries}) == len(judged)
    assert (FASTAPI_DOCS / "LICENSE-fastapi-docs.txt").is_file()


def test_two_queries_may_name_the_same_page_in_other_words(tmp_path: Path) -> None:
    """One judged file written `docs/guide.md` in one query and `guide.md` in another: both
    queries find it first (the second spelling used to win for every query)."""
    from tpsearch.collection import Collection
    from tpsearch.collection.retrieval_eval import evaluate_retrieval

    docs = write_corpus(tmp_path)
    judged = tmp_path / "judged.tsv"
    judged.write_text(
        "firewall port troubleshooting\tdocs/guide.md\nfirewall port troubleshooting\tguide.md\n",
        encoding="utf-8",
    )
    with Collection.locate(tmp_path, create=True) as col:
        col.index([docs], encoder_factory=using(HashingEncoder()))
        report = evaluate_retrieval(col, read_judged(judged), ["lexical"])
    assert [q.scores.mrr_10 for q in report.modes[0].queries] == [1.0, 1.0]
    assert report.missing == ()
