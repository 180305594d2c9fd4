"""Duplicate groups: pairs from the three methods joined into groups, each with a keeper.

Pairs are joined by union-find, strongest evidence first (exact, then lexical, then semantic;
within a method, higher similarity first), which is Kruskal's algorithm: the links kept are
a maximum spanning tree of each group, so every member shows the strongest link that
brought it in. A group's kind is its weakest kept link: a group joined only by identical
content is `exact`, one that needed an embedding link is `semantic`.

Nothing here touches files: groups are suggestions a user (or a script, through `--json`)
acts on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from tpsearch.analysis.items import Embeddings, TextItem, has_words
from tpsearch.analysis.lexical import lexical_pairs
from tpsearch.analysis.pairs import Pairs, TooManyPairs, exact_pairs, semantic_pairs
from tpsearch.errors import ConfigError, choice_error

DuplicateKind = Literal["exact", "lexical", "semantic"]
DedupeMethod = Literal["exact", "lexical", "semantic", "all"]
KeeperRule = Literal["oldest", "newest", "shortest-path"]

KINDS: tuple[DuplicateKind, ...] = get_args(DuplicateKind)  # strongest evidence first
METHODS: tuple[str, ...] = get_args(DedupeMethod)
KEEPER_RULES: tuple[str, ...] = get_args(KeeperRule)

# Names that say "I am a copy": `notes copy.md`, `notes - Copy (2).md`, `Copy of notes.md`,
# `notes (1).md`, `notes_backup.md`, `backup/notes.md`, `Docs - Copy/notes.md`, `notes.md.bak`,
# `notes.md~`; not names that merely contain such a word (`copy-paste.md`, `copyright.md`,
# `backup-strategy.md`, `database-backup.md`).
_END = r"(?:(?:\.[^/]*)?$|/)"  # then extensions (even .tar.gz) and the end, or a folder's end
_NUMBER = r"(?:[\s_-]*\(?\d+\)?)?"  # "copy 2", "copy (2)", "copy2"
_COPY_NAME = re.compile(
    r"(?i)("
    rf"[\s._-]copy{_NUMBER}{_END}"
    rf"|[\s._](?:bak|orig|backup){_NUMBER}{_END}"
    r"|(?:^|/)copy[\s_-]of[\s_-]"
    rf"|\(\d+\){_END}"
    r"|(?:^|/)backups?/"
    r"|~$"
    r")"
)


@dataclass(frozen=True)
class DedupeSettings:
    """What counts as a duplicate. Defaults are chosen to flag only what a person would."""

    method: DedupeMethod = "all"
    # Jaccard of 5-word shingles. Edits a person makes to a copy (a changed word, a deleted
    # paragraph) keep it above 0.8; on the 155 FastAPI docs pages the most similar pair of
    # genuinely different pages (sibling tutorials built from one template) scores 0.35.
    lexical_threshold: float = 0.8
    # Cosine of embeddings, in the collection's centred space (analysis.space): there distinct
    # FastAPI docs pages score at most 0.89 (SmolLM2-135M) / 0.87 (Gemma 3 270M) and planted
    # near-copies at least 0.97 / 0.98. On raw decoder vectors 99.9% of pages are above it.
    semantic_threshold: float = 0.95
    whitespace: bool = True  # exact: compare text with whitespace runs collapsed (reflowed copies)
    shingle_size: int = 5  # words per shingle: the usual choice for near-duplicate documents
    num_perm: int = 128  # MinHash permutations: enough banding choices for high LSH recall
    # Items with fewer words are not compared: empty files and one-line chunks ("```", "---")
    # repeat everywhere and are not duplicates anyone wants to hear about.
    min_words: int = 5
    keep: KeeperRule = "oldest"  # which member of a group to suggest keeping
    seed: int = 0  # MinHash permutations and the coarse cells of semantic search

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise choice_error("dedupe method", self.method, METHODS)
        if self.keep not in KEEPER_RULES:
            raise choice_error("keeper rule", self.keep, KEEPER_RULES)
        if not 0.0 < self.lexical_threshold <= 1.0:
            raise ConfigError(f"lexical threshold {self.lexical_threshold} must be in (0, 1]")
        if not 0.0 < self.semantic_threshold <= 1.0:
            raise ConfigError(f"semantic threshold {self.semantic_threshold} must be in (0, 1]")
        if self.shingle_size < 1 or self.num_perm < 2 or self.min_words < 1:
            raise ConfigError("shingle size and min words must be >= 1, MinHash permutations >= 2")

    @property
    def kinds(self) -> tuple[DuplicateKind, ...]:
        return KINDS if self.method == "all" else (self.method,)


@dataclass(frozen=True)
class DuplicateMember:
    """A member of a group and the link that brought it in (none for the keeper)."""

    item: TextItem
    linked_to: int | None  # id of the member it is linked to, on the path to the keeper
    similarity: float | None  # of that link: 1.0 exact, Jaccard for lexical, cosine for semantic
    link_kind: DuplicateKind | None


@dataclass(frozen=True)
class DuplicateGroup:
    """Items that duplicate each other, the keeper first."""

    kind: DuplicateKind  # the weakest link needed to join the group
    members: tuple[DuplicateMember, ...]  # keeper first, each member after the one it links to
    keeper_reason: str  # why the keeper is suggested, for a person to check
    byte_identical: bool  # every member has exactly the same text

    @property
    def keeper(self) -> TextItem:
        return self.members[0].item

    @property
    def duplicates(self) -> tuple[DuplicateMember, ...]:
        return self.members[1:]

    @property
    def saveable_bytes(self) -> int:
        """Bytes freed by keeping only the keeper."""
        return sum(m.item.size for m in self.duplicates)


@dataclass(frozen=True)
class DedupeReport:
    groups: tuple[DuplicateGroup, ...]  # largest first
    settings: DedupeSettings
    compared: int  # items long enough to compare
    too_short: int  # items under `min_words` words, left out
    unembedded: int  # compared items without a vector, left out of the semantic method

    @property
    def duplicate_count(self) -> int:
        """Items that could go (all members but the keepers)."""
        return sum(len(g.duplicates) for g in self.groups)

    @property
    def saveable_bytes(self) -> int:
        return sum(g.saveable_bytes for g in self.groups)

    def count_by_kind(self) -> dict[DuplicateKind, int]:
        return {kind: sum(g.kind == kind for g in self.groups) for kind in KINDS}


# Pairs a method may find (counted as found, before repeats are merged) before it stops:
# about 200 MB of pairs at the floor. Thousands of near-copies of one boilerplate passage stay
# well under it; a threshold at which most texts of a topic pair up does not.
_MIN_PAIR_BUDGET = 10_000_000
_PAIRS_PER_ITEM = 50


@contextmanager
def _within(limit: int, method: str, threshold: float, items: int) -> Iterator[None]:
    """A pair finder's TooManyPairs as the ConfigError a user can act on."""
    try:
        yield
    except TooManyPairs:
        raise _too_many(method, threshold, limit, items) from None


def _too_many(method: str, threshold: float, limit: int, items: int) -> ConfigError:
    default = getattr(DedupeSettings(), f"{method}_threshold")
    return ConfigError(
        f"the {method} method found more than {limit:,} similar pairs among {items:,} items "
        f"at threshold {threshold} and stopped before they fill the memory: so many pairs come "
        f"from a threshold too low for this collection (raise --{method}-threshold; default "
        f"{default}) or from a passage repeated in very many files (try --level file, or a "
        "higher --min-words)"
    )


def find_duplicates(
    items: Sequence[TextItem],
    embeddings: Embeddings | None = None,
    settings: DedupeSettings | None = None,
) -> DedupeReport:
    """Group duplicate items by the methods in `settings` (default: all three).

    `embeddings` is needed for the semantic method only; items without a vector (not
    embedded yet) are compared by the other methods and counted in `unembedded`.
    The result does not depend on the order of `items`.
    """
    settings = settings or DedupeSettings()
    ordered = sorted(items, key=lambda item: item.id)
    if len({item.id for item in ordered}) != len(ordered):
        raise ValueError("item ids must be unique")
    compared = [item for item in ordered if has_words(item.text, settings.min_words)]
    texts = [item.text for item in compared]
    kinds = settings.kinds

    evidence: list[tuple[DuplicateKind, Pairs]] = []
    if "exact" in kinds:
        identities = [item.identity(settings.whitespace) for item in compared]
        evidence.append(("exact", exact_pairs(identities, whitespace=False)))
    max_pairs = max(_MIN_PAIR_BUDGET, _PAIRS_PER_ITEM * len(compared))
    if "lexical" in kinds:
        with _within(max_pairs, "lexical", settings.lexical_threshold, len(compared)):
            found = lexical_pairs(
                texts,
                settings.lexical_threshold,
                shingle_size=settings.shingle_size,
                num_perm=settings.num_perm,
                seed=settings.seed,
                max_pairs=max_pairs,
            )
        evidence.append(("lexical", found))
    unembedded = 0
    if "semantic" in kinds:
        embeddings = embeddings or Embeddings.empty()
        vector_rows = embeddings.rows_for([item.id for item in compared])
        embedded = np.flatnonzero(vector_rows >= 0)
        unembedded = len(compared) - len(embedded)
        with _within(max_pairs, "semantic", settings.semantic_threshold, len(embedded)):
            found = semantic_pairs(
                embeddings.vectors_at(vector_rows[embedded]),
                settings.semantic_threshold,
                seed=settings.seed,
                max_pairs=max_pairs,
            )
        evidence.append(("semantic", found.through(embedded)))

    evidence = [(kind, _without_overlaps(pairs, compared)) for kind, pairs in evidence]
    groups = [
        _group(compared, links, settings.keep)
        for links in _spanning_forest(len(compared), evidence)
    ]
    groups.sort(key=lambda g: (-len(g.members), -g.saveable_bytes, g.keeper.path, g.keeper.id))
    return DedupeReport(
        groups=tuple(groups),
        settings=settings,
        compared=len(compared),
        too_short=len(ordered) - len(compared),
        unembedded=unembedded,
    )


class UnionFind:
    """Disjoint sets over 0..n-1 with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> bool:
        """Join the sets of a and b; False if they were one set already."""
        a, b = self.find(a), self.find(b)
        if a == b:
            return False
        if self.size[a] < self.size[b]:
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        return True


_Link = tuple[int, int, float, DuplicateKind]  # row, row, similarity, method


def _spanning_forest(n: int, evidence: list[tuple[DuplicateKind, Pairs]]) -> list[list[_Link]]:
    """Kruskal: the links that join each group, strongest first; one list per group."""
    if not evidence or n == 0:
        return []
    rank = np.concatenate([np.full(len(p), KINDS.index(k)) for k, p in evidence])
    left = np.concatenate([p.left for _, p in evidence])
    right = np.concatenate([p.right for _, p in evidence])
    sim = np.concatenate([p.similarity for _, p in evidence])
    sets = UnionFind(n)
    kept: list[_Link] = []
    for e in np.lexsort((right, left, -sim, rank)):
        a, b = int(left[e]), int(right[e])
        if sets.union(a, b):
            kept.append((a, b, float(sim[e]), KINDS[rank[e]]))
    by_root: dict[int, list[_Link]] = {}
    for link in kept:
        by_root.setdefault(sets.find(link[0]), []).append(link)
    return list(by_root.values())


def _without_overlaps(pairs: Pairs, items: Sequence[TextItem]) -> Pairs:
    """Drop pairs of chunks of one file whose line ranges overlap: the chunker's overlap
    repeats text on purpose. Repeats elsewhere in the same file are kept."""
    if not len(pairs):
        return pairs
    a = [items[i] for i in pairs.left]
    b = [items[j] for j in pairs.right]
    overlapping = np.array([x.path == y.path and _overlap(x, y) for x, y in zip(a, b, strict=True)])
    keep = ~overlapping
    return Pairs(pairs.left[keep], pairs.right[keep], pairs.similarity[keep])


def _overlap(x: TextItem, y: TextItem) -> bool:
    x_end = x.end_line if x.end_line is not None else float("inf")
    y_end = y.end_line if y.end_line is not None else float("inf")
    return x.start_line <= y_end and y.start_line <= x_end


def _group(items: Sequence[TextItem], links: list[_Link], rule: KeeperRule) -> DuplicateGroup:
    rows = sorted({row for a, b, _, _ in links for row in (a, b)})
    keeper_row, reason = choose_keeper([items[r] for r in rows], rule)
    keeper_row = rows[keeper_row]
    neighbours: dict[int, list[tuple[int, float, DuplicateKind]]] = {r: [] for r in rows}
    for a, b, sim, kind in links:
        neighbours[a].append((b, sim, kind))
        neighbours[b].append((a, sim, kind))
    # Walk the tree out from the keeper, depth first, strongest link first: each member comes
    # right after the member it is linked to, and its link is the one towards the keeper.
    members: list[DuplicateMember] = []
    stack: list[tuple[int, int | None, float | None, DuplicateKind | None]] = [
        (keeper_row, None, None, None)
    ]
    seen = {keeper_row}
    while stack:
        row, parent_id, link_similarity, link_kind = stack.pop()
        members.append(DuplicateMember(items[row], parent_id, link_similarity, link_kind))
        children = [link for link in neighbours[row] if link[0] not in seen]
        children.sort(key=lambda link: (-link[1], items[link[0]].path, items[link[0]].id))
        seen.update(child for child, _, _ in children)
        stack.extend((child, items[row].id, s, k) for child, s, k in reversed(children))
    weakest = max(KINDS.index(kind) for _, _, _, kind in links)
    return DuplicateGroup(
        kind=KINDS[weakest],
        members=tuple(members),
        keeper_reason=reason,
        byte_identical=len({m.item.identity(whitespace=False) for m in members}) == 1,
    )


def looks_like_copy(path: str) -> bool:
    """A name such as `x copy.md`, `x (1).md`, `backup/x.md` or `x.md~`."""
    return bool(_COPY_NAME.search(path))


def choose_keeper(items: Sequence[TextItem], rule: KeeperRule = "oldest") -> tuple[int, str]:
    """Index of the item to suggest keeping, and why, in words.

    Names that look like copies never win. Then `rule` decides: "oldest" (the default: the
    original usually predates its copies, since copying sets a new mtime), "newest" (the
    most recently edited), or "shortest-path" (the canonical place, nearest the root).
    Remaining ties go to the shorter path, then path order, then the earlier line. The
    reason names every criterion that beat some other member, so it is true of each.
    """
    if rule not in KEEPER_RULES:
        raise choice_error("keeper rule", rule, KEEPER_RULES)

    def depth(item: TextItem) -> tuple[int, int]:
        return (item.path.count("/"), len(item.path))

    by_rule: dict[str, tuple[str, Callable[[TextItem], Any]]] = {
        "oldest": ("oldest (modified first)", lambda i: i.mtime),
        "newest": ("newest (most recently modified)", lambda i: -i.mtime),
        "shortest-path": ("shortest path", depth),
    }
    criteria = [
        ("not named like a copy", lambda i: looks_like_copy(i.path)),
        by_rule[rule],
        ("shortest path", depth),
        ("first by path", lambda i: i.path),
        ("first occurrence in the file", lambda i: (i.start_line, i.id)),
    ]
    ranked = sorted(range(len(items)), key=lambda r: [key(items[r]) for _, key in criteria])
    keeper = items[ranked[0]]
    deciding = {
        next(
            (n for n, (_, key) in enumerate(criteria) if key(keeper) != key(other)),
            len(criteria) - 1,
        )
        for other in (items[r] for r in ranked[1:])
    }
    return ranked[0], "; ".join(criteria[n][0] for n in sorted(deciding))
