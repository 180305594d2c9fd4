"""Sentence pairs with gold similarity scores: STS-Benchmark, SICK and plain tab-separated files.

Fields are split on tabs, never with a CSV parser (STS sentences hold quotes); malformed rows are
counted, not fatal. A seeded sample remembers how many pairs it was drawn from, so results can
say "300 of 1500 pairs".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from tpsearch.errors import DataError

PairFormat = Literal["stsb", "sick", "plain"]


@dataclass(frozen=True)
class SentencePairs:
    """Sentence pairs with gold similarity scores, and what reading them skipped."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: np.ndarray  # (N,) float64 gold scores
    format: PairFormat
    skipped: int  # malformed rows, counted rather than fatal
    source: str
    sampled_from: int | None = None  # pairs in the file when these are a sample of them

    def __len__(self) -> int:
        return len(self.first)

    @property
    def available(self) -> int:
        """Pairs in the file these were read from (more than len() for a sample)."""
        return self.sampled_from if self.sampled_from is not None else len(self)

    def describe(self) -> str:
        """'300 of 1500 pairs' for a sample, '1500 pairs' for all of them."""
        if self.sampled_from is not None:
            return f"{len(self)} of {self.sampled_from} pairs"
        return f"{len(self)} pairs"

    def sample(self, count: int, seed: int = 0) -> SentencePairs:
        """A seeded random subset of `count` pairs (all of them when count is 0 or too large)."""
        if count <= 0 or count >= len(self):
            return self
        chosen = np.sort(np.random.default_rng(seed).choice(len(self), count, replace=False))
        return replace(
            self,
            first=tuple(self.first[i] for i in chosen),
            second=tuple(self.second[i] for i in chosen),
            scores=self.scores[chosen],
            sampled_from=self.available,
        )


def shipped_sts_dev() -> Path:
    """The STS-Benchmark dev set shipped with tpsearch (CC BY-SA 4.0; see its licence file)."""
    packaged = resources.files("tpsearch") / "_data" / "sts" / "sts-dev.csv"
    candidates = [Path(str(packaged)), Path(__file__).resolve().parents[2] / "data/sts/sts-dev.csv"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError("the shipped STS-Benchmark dev set is missing: pass --data FILE")


def read_pairs(path: Path) -> SentencePairs:
    """Read STS-Benchmark, SICK or plain `sentence1<TAB>sentence2<TAB>score` files.

    Fields are split on tabs (never a CSV parser: STS sentences hold quotes). STS-Benchmark
    rows are genre, file, year, id, score, sentence1, sentence2 and sometimes two more columns;
    SICK has a header naming sentence_A, sentence_B and relatedness_score.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError as error:
        raise DataError(f"no such file: {path}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path} as UTF-8 text: {error}") from error
    rows = [line.split("\t") for line in lines if line.strip()]
    if not rows:
        raise DataError(f"{path} is empty")

    header = [column.strip().lower() for column in rows[0]]
    layout: tuple[PairFormat, int, int, int] | None = None  # format, sentence columns, score
    if "relatedness_score" in header:
        try:
            layout = (
                "sick",
                header.index("sentence_a"),
                header.index("sentence_b"),
                header.index("relatedness_score"),
            )
        except ValueError as error:
            raise DataError(f"{path}: a SICK header needs sentence_A and sentence_B") from error
        rows = rows[1:]
    elif len(rows[0]) == 3 and _number(rows[0][2]) is None and "score" in header[2]:
        rows = rows[1:]  # a header line of a plain file, not a malformed row

    first, second, scores = [], [], []
    skipped = 0
    for row in rows:
        if layout is None:
            layout = _guess_layout(row)
        parsed = _parse_row(row, layout) if layout is not None else None
        if parsed is None:
            skipped += 1
            continue
        first.append(parsed[0])
        second.append(parsed[1])
        scores.append(parsed[2])
    if layout is None or not first:
        raise DataError(
            f"{path}: no sentence pairs found ({skipped} malformed rows); expected "
            "STS-Benchmark, SICK, or sentence1<TAB>sentence2<TAB>score lines"
        )
    return SentencePairs(
        tuple(first), tuple(second), np.array(scores), layout[0], skipped, str(path)
    )


def _guess_layout(row: list[str]) -> tuple[PairFormat, int, int, int] | None:
    if len(row) >= 7 and _number(row[4]) is not None:
        return ("stsb", 5, 6, 4)
    if len(row) == 3 and _number(row[2]) is not None:
        return ("plain", 0, 1, 2)
    return None


def _parse_row(
    row: list[str], layout: tuple[PairFormat, int, int, int]
) -> tuple[str, str, float] | None:
    _, a, b, score_column = layout
    if len(row) <= max(a, b, score_column):
        return None
    score = _number(row[score_column])
    first, second = row[a].strip(), row[b].strip()
    if score is None or not first or not second:
        return None
    return first, second, score


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
