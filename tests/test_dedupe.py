"""Dedupe on real text: planted duplicates are all found, related-but-different pages never."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from tests.planted import (
    WORD,
    oracle_jaccard,
    paragraph_chunks,
    planted_files,
    shingle_set,
)
from tpsearch.analysis import (
    DedupeSettings,
    DuplicateGroup,
    Embeddings,
    TextItem,
    choose_keeper,
    find_duplicates,
)
from tpsearch.errors import ConfigError


def paths(group: DuplicateGroup) -> set[str]:
    return {m.item.path for m in group.members}


def item(id: int, text: str, path: str | None = None, mtime: float = 0.0, **lines: int) -> TextItem:
    return TextItem(id, path or f"f{id}.md", text, len(text.encode()), mtime, **lines)


PARAGRAPH = (
    "Background tasks run after the response is sent, so the client does not wait for "
    "slow work such as sending an email or processing an uploaded file"
)


# --- planted duplicates in real files -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("exact", {"exact copy", "reflowed"}),
        ("lexical", {"exact copy", "reflowed", "one word", "paragraph"}),
        ("all", {"exact copy", "reflowed", "one word", "paragraph"}),
    ],
)
def test_file_level_finds_every_planted_duplicate_and_no_unrelated_file(
    method: str, expected: set[str]
) -> None:
    items, plants = planted_files()
    report = find_duplicates(items, settings=DedupeSettings(method=method))  # type: ignore[arg-type]

    found = {frozenset(paths(g)) for g in report.groups}
    wanted = {frozenset({p.copy, p.original}) for p in plants if p.edit in expected}
    assert found == wanted  # every planted pair, each its own group, nothing else
    assert report.compared == len(items) and report.too_short == 0


def test_each_planted_group_says_what_kind_of_duplicate_it_is() -> None:
    items, plants = planted_files()
    report = find_duplicates(items)
    kind_of = {frozenset(paths(g)): g for g in report.groups}
    for plant in plants:
        group = kind_of[frozenset({plant.copy, plant.original})]
        assert group.kind == plant.kind, plant
        assert group.keeper.path == plant.original  # the copies are newer
        assert group.byte_identical == (plant.edit == "exact copy")
        link = group.duplicates[0]
        assert link.link_kind == plant.kind and link.linked_to == group.keeper.id
        expected_similarity = (
            1.0 if plant.kind == "exact" else oracle_jaccard(group.keeper.text, link.item.text)
        )
        assert link.similarity == pytest.approx(expected_similarity, abs=1e-6)
    assert report.duplicate_count == 4
    assert report.saveable_bytes == sum(g.duplicates[0].item.size for g in report.groups)


def test_strict_exact_needs_identical_bytes() -> None:
    items, _ = planted_files()
    report = find_duplicates(items, settings=DedupeSettings(method="exact", whitespace=False))
    assert [paths(g) for g in report.groups] == [{"tutorial/debugging.md", "backup/debugging.md"}]


def test_chunk_level_groups_agree_with_brute_force_jaccard() -> None:
    """Every pair of passages with Jaccard >= 0.8 ends up in one group (recall), and every
    link in every group really is a duplicate (precision); planted copies repeat passages."""
    files, plants = planted_files()
    chunks = paragraph_chunks(files)
    report = find_duplicates(chunks, settings=DedupeSettings(method="lexical"))

    group_of = {m.item.id: n for n, g in enumerate(report.groups) for m in g.members}
    shingles = {c.id: shingle_set(c.text) for c in chunks if len(WORD.findall(c.text)) >= 5}
    for a, b in itertools.combinations(sorted(shingles), 2):
        if oracle_jaccard(shingles[a], shingles[b]) >= 0.8:
            assert a in group_of and group_of[a] == group_of.get(b), (chunks[a], chunks[b])
    by_id = {c.id: c for c in chunks}
    for group in report.groups:
        for member in group.duplicates:
            linked = by_id[member.linked_to]  # type: ignore[index]
            assert oracle_jaccard(member.item.text, linked.text) >= 0.8

    # Passages of the planted copies are found across files, line ranges intact.
    copied = {p.copy for p in plants}
    assert any(
        {m.item.path for m in g.members} & copied and len({m.item.path for m in g.members}) > 1
        for g in report.groups
    )
    assert all(m.item.end_line is not None for g in report.groups for m in g.members)


def test_chunk_level_unrelated_files_share_no_group_with_each_other() -> None:
    files, _ = planted_files()
    siblings = {"tutorial/header-param-models.md", "tutorial/cookie-param-models.md"}
    chunks = paragraph_chunks([f for f in files if f.path in siblings])
    report = find_duplicates(chunks)
    for group in report.groups:
        # Template sentences they share verbatim are real repeats; their own text is not.
        texts = {" ".join(m.item.text.split()) for m in group.members}
        assert all(oracle_jaccard(group.keeper.text, t) >= 0.8 for t in texts)


# --- groups, keepers, edge cases ----------------------------------------------------------------


def test_pairs_chain_into_one_group_with_the_weakest_kind() -> None:
    words = PARAGRAPH.split()
    a = item(1, PARAGRAPH, mtime=1)
    b = item(2, PARAGRAPH, mtime=2)  # identical to a
    c = item(3, " ".join([*words, "today"]), mtime=3)  # near-duplicate of a and b
    d = item(4, " ".join([*words, "today", "quickly"]), mtime=4)  # near c, a bit less near a
    report = find_duplicates([d, c, b, a], settings=DedupeSettings(method="all"))

    [group] = report.groups
    assert group.kind == "lexical" and group.keeper.id == 1
    links = {m.item.id: (m.linked_to, m.link_kind) for m in group.duplicates}
    assert links == {2: (1, "exact"), 3: (1, "lexical"), 4: (3, "lexical")}
    order = [m.item.id for m in group.members]
    assert order.index(4) == order.index(3) + 1  # a member follows the member it links to


def test_all_identical_items_form_one_exact_group() -> None:
    items = [item(n, PARAGRAPH, mtime=100 - n) for n in range(6)]
    [group] = find_duplicates(items).groups
    assert group.kind == "exact" and group.byte_identical and len(group.members) == 6
    assert group.keeper.id == 5 and group.keeper_reason.startswith("oldest")
    assert group.saveable_bytes == 5 * len(PARAGRAPH.encode())


@pytest.mark.parametrize(
    "items",
    [
        [],
        [item(1, PARAGRAPH)],
        [item(1, PARAGRAPH), item(2, "a different text entirely, nothing alike")],
    ],
    ids=["empty", "single", "unrelated"],
)
def test_no_duplicates_is_an_empty_report(items: list[TextItem]) -> None:
    report = find_duplicates(items)
    assert report.groups == () and report.duplicate_count == 0 and report.saveable_bytes == 0
    assert report.compared == len(items)


def test_items_under_min_words_are_counted_not_compared() -> None:
    items = [item(1, ""), item(2, ""), item(3, "```"), item(4, "```"), item(5, PARAGRAPH)]
    report = find_duplicates(items)
    assert report.groups == () and report.too_short == 4 and report.compared == 1


def test_overlapping_chunks_of_one_file_are_not_duplicates_but_repeats_are() -> None:
    overlap = [
        item(1, PARAGRAPH, "a.md", start_line=1, end_line=10),
        item(2, PARAGRAPH, "a.md", start_line=5, end_line=14),  # the chunker's overlap
    ]
    assert find_duplicates(overlap).groups == ()
    repeat = [*overlap, item(3, PARAGRAPH, "a.md", start_line=40, end_line=49)]
    [group] = find_duplicates(repeat).groups
    assert {m.item.id for m in group.members} >= {1, 3}
    assert group.keeper_reason == "first occurrence in the file"


def test_semantic_method_uses_vectors_and_counts_pending_items() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 16))
    vectors = np.vstack([base[0], base[0] + 0.01, base[1]]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = [item(n, f"{PARAGRAPH} variant {n}") for n in range(4)]  # item 3 is not embedded
    embeddings = Embeddings(np.array([0, 1, 2]), vectors)

    report = find_duplicates(items, embeddings, DedupeSettings(method="semantic"))
    [group] = report.groups
    assert group.kind == "semantic" and {m.item.id for m in group.members} == {0, 1}
    assert group.duplicates[0].similarity == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-6)
    assert report.unembedded == 1

    nothing_embedded = find_duplicates(items, None, DedupeSettings(method="semantic"))
    assert nothing_embedded.groups == () and nothing_embedded.unembedded == 4


def test_result_does_not_depend_on_input_order() -> None:
    items, _ = planted_files()
    chunks = paragraph_chunks(items)
    shuffled = chunks[:]
    random.Random(7).shuffle(shuffled)
    assert find_duplicates(shuffled).groups == find_duplicates(chunks).groups


def test_keeper_rules_and_their_reasons() -> None:
    original = item(1, "x", "docs/guide.md", mtime=100)
    copy = item(2, "x", "docs/guide copy.md", mtime=50)  # older, but named like a copy
    nested = item(3, "x", "docs/archive/2023/guide.md", mtime=200)
    oldest = "oldest (modified first)"
    assert choose_keeper([copy, original]) == (1, "not named like a copy")
    assert choose_keeper([copy, original, nested]) == (1, f"not named like a copy; {oldest}")
    assert choose_keeper([nested, original], "oldest") == (
        1,
        "oldest (modified first)",
    )
    assert choose_keeper([original, nested], "newest") == (1, "newest (most recently modified)")
    assert choose_keeper([nested, original], "shortest-path") == (1, "shortest path")
    same_time = [item(1, "x", "b/x.md", mtime=7), item(2, "x", "a/x.md", mtime=7)]
    assert choose_keeper(same_time) == (1, "first by path")
    with pytest.raises(ConfigError, match="'oldest', 'newest', 'shortest-path'"):
        choose_keeper(same_time, "largest")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "fuzzy"}, "'exact', 'lexical', 'semantic', 'all'"),
        ({"lexical_threshold": 1.5}, "lexical threshold"),
        ({"semantic_threshold": 0.0}, "semantic threshold"),
        ({"min_words": 0}, "min words"),
    ],
)
def test_invalid_settings_say_what_is_valid(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DedupeSettings(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "path",
    [
        "guide copy.md",
        "docs/guide - Copy (2).md",
        "Copy of guide.md",
        "guide (1).md",
        "guide_backup.md",
        "backup/guide.md",
        "guide.md.bak",
        "guide.md~",
        "Docs - Copy/guide.md",
        "guide copy.tar.gz",
    ],
)
def test_names_that_say_copy_lose_the_keeper(path: str) -> None:
    copy = item(1, "x", path, mtime=10)  # older: it would win on age alone
    assert choose_keeper([copy, item(2, "x", "docs/guide.md", mtime=20)]) == (
        1,  # the position of the keeper
        "not named like a copy",
    )


@pytest.mark.parametrize(
    "path",
    ["copy-paste.md", "backup-strategy.md", "database-backup.md", "docs/copyright.md", "origin.md"],
)
def test_names_that_only_contain_such_a_word_are_not_copies(path: str) -> None:
    keeper, reason = choose_keeper([item(1, "x", path, mtime=10), item(2, "x", "b.md", mtime=20)])
    assert (keeper, reason) == (0, "oldest (modified first)")


def test_a_threshold_that_pairs_everything_is_refused_not_a_memory_blow_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,500 vectors in one tight bundle: ~1.1M pairs at cosine 0.5, where a duplicate
    report would be meaningless; past its budget (lowered here from 10M, to stay quick) the
    search stops and says which option to raise."""
    rng = np.random.default_rng(0)
    bundle = np.ones(8) + 0.3 * rng.standard_normal((1500, 8))
    vectors = (bundle / np.linalg.norm(bundle, axis=1, keepdims=True)).astype(np.float32)
    items = [item(n, f"text number {n} has enough words") for n in range(1500)]
    embeddings = Embeddings(np.arange(1500), vectors)
    strict = find_duplicates(items, embeddings, DedupeSettings(method="semantic"))
    assert strict.compared == 1500 and strict.groups  # the default threshold runs as usual
    monkeypatch.setattr("tpsearch.analysis.duplicates._MIN_PAIR_BUDGET", 200_000)
    with pytest.raises(ConfigError, match="raise --semantic-threshold"):
        find_duplicates(
            items, embeddings, DedupeSettings(method="semantic", semantic_threshold=0.5)
        )
    with pytest.raises(ConfigError, match="raise --lexical-threshold"):
        same_words = [item(n, "one two three four five six seven " + str(n)) for n in range(1500)]
        find_duplicates(
            same_words, settings=DedupeSettings(method="lexical", lexical_threshold=0.3)
        )
