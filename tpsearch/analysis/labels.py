"""Keyword labels for clusters: class-based TF-IDF over each cluster's text.

c-TF-IDF (Grootendorst, BERTopic, arXiv 2203.05794) treats all text of a cluster as one
document: a word scores high when it is frequent in this cluster and rare across the others,
so words every cluster uses ("fastapi" in FastAPI's docs) sink without a hand-made list.
Stop words are removed first; they carry no topic, whatever their counts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

# Letters (any script), optionally joined by underscores: `response_model` is one keyword;
# digits and punctuation split words, so `tutorial001_py310` yields `tutorial`.
_KEYWORD = re.compile(r"[^\W\d_]+(?:_[^\W\d_]+)*")
_MIN_LENGTH = 3  # "id", "ok", "db": too ambiguous to name a topic

# English function words, plus the URL and markup debris of text and markdown files.
_STOP_WORDS = """
    about above after again against all also although always among and another any anyone
    anything are aren around because been before being below between both but can cannot
    could couldn did didn does doesn doing done don down during each either else even ever
    every few for from further get gets getting given gives goes going got had hadn has hasn
    have haven having her here hers herself him himself his how however into isn its itself
    just least less let like likely made make makes many may maybe might mine more most much
    must mustn myself need needn neither never new next nor not nothing now off often once
    one only onto other others otherwise our ours ourselves out over own per perhaps please
    put rather really same see seen several shall shan she should shouldn since some someone
    something still such than that the their theirs them themselves then there therefore
    these they thing things this those though three through thus too two under until upon
    use used uses using very via want was wasn way ways well were weren what whatever when
    where whether which while who whom whose why will with within without won would wouldn
    yes yet you your yours yourself yourselves
    http https www com org html htm img src href div png jpg svg
"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
# A word in more than this share of all texts names the collection, not a topic ("python" and
# "pep" in the Python PEPs): c-TF-IDF alone lets it through when one cluster uses it more.
MAX_DOCUMENT_SHARE = 0.8
MIN_TEXTS_FOR_SHARE = 5  # fewer texts: a share says little


def keywords_by_cluster(
    texts: Sequence[str], clusters: Sequence[int] | np.ndarray, k: int, top: int = 5
) -> list[tuple[str, ...]]:
    """The `top` c-TF-IDF keywords of each of the `k` clusters (`clusters[i]` owns `texts[i]`).

    Score of word w in cluster c: tf(w, c) * log(1 + A / f(w)), with tf the share of c's
    words that are w, f(w) the count of w over all clusters and A the mean number of words
    per cluster (BERTopic's ClassTfidfTransformer). A keyword must also appear in at least
    two of the cluster's texts (when it has two): one long file repeating a word is not a
    topic, and appear in at most `MAX_DOCUMENT_SHARE` of all texts: a word nearly every text
    uses names the collection. Ties go to the alphabetically first word, so labels are
    deterministic.
    """
    counts = [Counter[str]() for _ in range(k)]
    spread = [Counter[str]() for _ in range(k)]  # in how many texts of the cluster
    sizes = np.zeros(k, dtype=np.int64)
    for text, cluster in zip(texts, clusters, strict=True):
        tokens = tokens_for_labels(text)
        counts[cluster].update(tokens)
        spread[cluster].update(set(tokens))
        sizes[cluster] += 1

    everywhere = _in_almost_every_text(spread, len(texts))
    vocabulary = sorted(set().union(*counts) - everywhere)
    if not vocabulary:
        return [() for _ in range(k)]
    column = {word: j for j, word in enumerate(vocabulary)}
    tf = np.zeros((k, len(vocabulary)), dtype=np.float64)
    for c, counter in enumerate(counts):
        for word, count in counter.items():
            if word in column:
                tf[c, column[word]] = count
    words_per_cluster = tf.sum(axis=1)
    average_words = words_per_cluster[words_per_cluster > 0].mean()
    idf = np.log1p(average_words / tf.sum(axis=0))
    scores = tf / np.maximum(words_per_cluster, 1.0)[:, None] * idf

    labels = []
    for c in range(k):
        needed = min(2, int(sizes[c]))
        ranked = np.argsort(-scores[c], kind="stable")  # vocabulary is sorted: ties alphabetical
        chosen: list[str] = []
        for j in ranked:
            if scores[c, j] <= 0 or len(chosen) == top:
                break
            if spread[c][vocabulary[j]] >= needed:
                chosen.append(vocabulary[j])
        labels.append(tuple(chosen))
    return labels


def _in_almost_every_text(spread: Sequence[Counter[str]], texts: int) -> set[str]:
    if texts < MIN_TEXTS_FOR_SHARE:
        return set()
    total = sum(spread, Counter[str]())
    return {word for word, n in total.items() if n > MAX_DOCUMENT_SHARE * texts}


def tokens_for_labels(text: str) -> list[str]:
    """Lower-cased words that could name a topic: no stop words, numbers or short words."""
    return [
        word
        for word in _KEYWORD.findall(text.lower())
        if len(word) >= _MIN_LENGTH and word not in STOP_WORDS
    ]


def label_of(keywords: Sequence[str], width: int = 3) -> str:
    """A short readable label from the first keywords."""
    return ", ".join(keywords[:width]) if keywords else "(no keywords)"
