"""Lexical near-duplicates: word-shingle Jaccard, proposed by MinHash LSH, verified exactly.

A text is the set of its overlapping runs of `shingle_size` words (lower-cased, punctuation
and whitespace ignored). Two texts are near-duplicates when the Jaccard similarity of those
sets reaches the threshold. datasketch's MinHash LSH proposes candidate pairs in about linear
time; every candidate is then scored exactly, so the LSH can only cost recall, never
precision, and its banding is tuned for recall (`lsh_bands`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from tpsearch.analysis.items import words
from tpsearch.analysis.pairs import PairBudget, Pairs

# Odd 64-bit multiplier (2^64 / golden ratio) for the polynomial hash of a word window.
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


def shingles(tokens: Sequence[str], size: int, word_hashes: dict[str, int]) -> np.ndarray:
    """Sorted unique 64-bit hashes of every run of `size` consecutive tokens.

    Word hashes are BLAKE2b (stable across runs, unlike `hash()`), cached in `word_hashes`
    because vocabularies are small and texts are many. A text shorter than `size` words
    is one shingle of all its words, so short identical texts still match.
    """
    if not tokens:
        return np.empty(0, dtype=np.uint64)
    try:
        codes = np.array([word_hashes[w] for w in tokens], dtype=np.uint64)
    except KeyError:  # new words: hash them once (rare once the vocabulary is seen)
        for word in set(tokens).difference(word_hashes):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            word_hashes[word] = int.from_bytes(digest, "little")
        codes = np.array([word_hashes[w] for w in tokens], dtype=np.uint64)
    width = min(size, len(codes))
    count = len(codes) - width + 1
    hashed = codes[:count].copy()
    for offset in range(1, width):
        hashed = hashed * _MULTIPLIER + codes[offset : offset + count]  # wraps mod 2^64
    return np.unique(hashed)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a ∩ b| / |a ∪ b| of two sorted unique arrays."""
    common = len(np.intersect1d(a, b, assume_unique=True))
    return common / (len(a) + len(b) - common)


def lsh_bands(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows per band) for MinHash LSH: the most selective banding that still
    proposes a pair of Jaccard exactly `threshold` with probability >= `recall`.

    A pair of Jaccard s shares a band with probability 1 - (1 - s^r)^b (Leskovec, Rajaraman
    and Ullman, Mining of Massive Datasets, 3.4). More rows per band make dissimilar pairs
    rarer; all permutations are used as bands, so pairs just above the threshold are almost
    never missed (at 0.8 and 128 permutations: 21 bands of 6 rows, which propose a pair of
    Jaccard 0.84 with probability 0.9998 in theory). datasketch's own optimiser balances
    false positives against false negatives over the whole range and, there, proposes a
    pair right at the threshold only 40% of the time; here a false positive costs one
    exact Jaccard, so recall comes first.
    """
    best = (num_perm, 1)  # one row per band: the most permissive banding there is
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall:
            best = (bands, rows)
    return best


def lexical_pairs(
    texts: Sequence[str],
    threshold: float,
    *,
    shingle_size: int = 5,
    num_perm: int = 128,
    seed: int = 0,
    max_pairs: int | None = None,
) -> Pairs:
    """Rows whose word-shingle sets have Jaccard >= `threshold` (exact), found via LSH.
    TooManyPairs when the LSH proposes more than `max_pairs` candidate pairs.

    One pass: each text is queried against the texts before it, then inserted, so only the
    LSH band keys stay in memory. Texts with the same shingle set are linked to the first of
    them directly (similarity 1.0) and only that one enters the LSH.
    """
    from datasketch import MinHash, MinHashLSH

    bands, rows_per_band = lsh_bands(threshold, num_perm)
    lsh = MinHashLSH(num_perm=num_perm, params=(bands, rows_per_band))
    blank = MinHash(num_perm=num_perm, seed=seed, hashfunc=_as_is)
    word_hashes: dict[str, int] = {}
    first_with: dict[bytes, int] = {}
    left: list[int] = []
    right: list[int] = []
    candidates: list[tuple[int, int]] = []
    budget = PairBudget(max_pairs)
    for row, text in enumerate(texts):
        sets = shingles(words(text), shingle_size, word_hashes)
        if not len(sets):
            continue
        first = first_with.setdefault(hashlib.blake2b(sets.tobytes()).digest(), row)
        if first != row:
            left.append(first)
            right.append(row)
            continue
        sketch = blank.copy()
        # datasketch iterates over the values: a list of ints is the fastest to walk
        sketch.update_batch(_fold_to_32_bits(sets).tolist())
        found = lsh.query(sketch)
        budget.take(len(found))
        candidates.extend((earlier, row) for earlier in found)
        lsh.insert(row, sketch, check_duplication=False)
    same = Pairs.of(np.array(left), np.array(right), 1.0)
    return Pairs.concat([same, _verified(texts, candidates, threshold, shingle_size, word_hashes)])


def _verified(
    texts: Sequence[str],
    candidates: list[tuple[int, int]],
    threshold: float,
    shingle_size: int,
    word_hashes: dict[str, int],
) -> Pairs:
    """The candidate pairs whose exact Jaccard reaches the threshold."""
    cache: dict[int, np.ndarray] = {}

    def shingles_of(row: int) -> np.ndarray:
        if row not in cache:
            cache[row] = shingles(words(texts[row]), shingle_size, word_hashes)
        return cache[row]

    found = [
        (a, b, s)
        for a, b in candidates
        if (s := jaccard(shingles_of(a), shingles_of(b))) >= threshold
    ]
    if not found:
        return Pairs.empty()
    left, right, similarity = zip(*found, strict=True)
    return Pairs.of(np.array(left), np.array(right), np.array(similarity))


def _as_is(value: int) -> int:
    """MinHash's hash function: the values are hashes already."""
    return value


def _fold_to_32_bits(hashes: np.ndarray) -> np.ndarray:
    """64-bit shingle hashes as the 32-bit values datasketch's default scheme permutes."""
    return ((hashes ^ (hashes >> np.uint64(32))) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
