"""STS evaluation and layer calibration: Spearman x100 of cosine similarity against gold scores.

The paper's stated limitation is that the best TP end layer and exit layer vary with the model,
the data and the prompt. `calibrate` sweeps the TP end layer; each sweep point is one forward
pass that yields every exit layer at once, so a full grid costs a handful of passes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from tpsearch.engine.calibration import CalibrationRecord
from tpsearch.errors import ConfigError, DataError

if TYPE_CHECKING:
    from tpsearch.engine.token_prepending import TPEncoder

PairFormat = Literal["stsb", "sick", "plain"]
Progress = Callable[[int, int], None]  # (texts done, texts in all) across every pass


@dataclass(frozen=True)
class SentencePairs:
    """Sentence pairs with gold similarity scores, and what reading them skipped."""

    first: tuple[str, ...]
    second: tuple[str, ...]
    scores: np.ndarray  # (N,) float64 gold scores
    format: PairFormat
    skipped: int  # malformed rows, counted rather than fatal
    source: str

    def __len__(self) -> int:
        return len(self.first)

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


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN when either is constant."""
    rx, ry = _ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denominator if denominator > 0 else math.nan


def _ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # ranks before each distinct value
    return (starts + (counts + 1) / 2.0)[inverse]


def pair_spearmans(
    vectors: dict[int, np.ndarray], index: dict[str, int], pairs: SentencePairs
) -> dict[int, float]:
    """Spearman x100 of cosine similarity (unit vectors: a dot product) per exit layer."""
    a = np.array([index[s] for s in pairs.first])
    b = np.array([index[s] for s in pairs.second])
    return {
        layer: 100.0 * spearman(np.einsum("nd,nd->n", v[a], v[b]), pairs.scores)
        for layer, v in vectors.items()
    }


def _require_scorable(pairs: SentencePairs) -> None:
    """A rank correlation needs at least 3 pairs whose gold scores are not all equal."""
    if len(pairs) < 3 or np.ptp(pairs.scores) == 0:
        raise DataError(
            f"{pairs.source}: {len(pairs)} pairs with {len(set(pairs.scores.tolist()))} distinct "
            "gold scores: Spearman needs at least 3 pairs and 2 different scores"
        )


def _unique_sentences(pairs: SentencePairs) -> tuple[list[str], dict[str, int]]:
    sentences = list(dict.fromkeys(pairs.first + pairs.second))
    return sentences, {s: i for i, s in enumerate(sentences)}


@dataclass(frozen=True)
class StsResult:
    """Spearman x100 with Token Prepending and for the same template without it."""

    pairs: int
    skipped: int
    tp: float | None  # None when the template has no <PST> slot
    baseline: float
    tp_settings: str
    baseline_settings: str


def evaluate_sts(
    encoder: TPEncoder, pairs: SentencePairs, batch_size: int = 32, progress: Progress | None = None
) -> StsResult:
    """Score `pairs` with TP (the encoder's settings) and without (same template and exit)."""
    _require_scorable(pairs)
    sentences, index = _unique_sentences(pairs)
    with_tp = encoder if encoder.tp.tp else None
    if with_tp is None and encoder.tp.template.has_pst:
        with_tp = encoder.variant(tp=True)
    baseline = encoder.variant(tp=False)
    runs = [e for e in (with_tp, baseline) if e is not None]
    scores = []
    for done, variant in enumerate(runs):
        layer = variant.tp.exit_layer
        vectors = {
            layer: variant.encode(sentences, batch_size, _offset(progress, done, runs, sentences))
        }
        scores.append(pair_spearmans(vectors, index, pairs)[layer])
    return StsResult(
        pairs=len(pairs),
        skipped=pairs.skipped,
        tp=scores[0] if with_tp is not None else None,
        baseline=scores[-1],
        tp_settings=_describe(with_tp) if with_tp is not None else "template has no <PST>",
        baseline_settings=_describe(baseline),
    )


def _describe(encoder: TPEncoder) -> str:
    tp = encoder.tp
    layers = f"TP layers [{tp.tp_start}, {tp.tp_end})" if tp.tp else "no TP"
    return f"{tp.template.name}, {layers}, exit {tp.exit_layer}/{tp.num_layers}"


def _offset(
    progress: Progress | None, done: int, runs: Sequence[object], sentences: Sequence[str]
) -> Callable[[int], None] | None:
    """Adapt a (done, total) progress callback to one pass among several."""
    if progress is None:
        return None
    total = len(runs) * len(sentences)
    state = {"done": done * len(sentences)}

    def step(count: int) -> None:
        state["done"] += count
        progress(state["done"], total)

    return step


@dataclass(frozen=True)
class CalibrationResult:
    """Spearman x100 for every (TP end layer, exit layer), and the template without TP."""

    tp_start: int
    tp_ends: tuple[int, ...]
    exits: tuple[int, ...]  # hidden_states indices 1..L
    grid: np.ndarray  # (len(tp_ends), len(exits)); NaN where exit < tp_end (not a valid setting)
    baseline: np.ndarray  # (len(exits),) the same template without TP
    pairs: int
    skipped: int

    @property
    def best(self) -> tuple[int, int, float]:
        """(tp_end, exit layer, Spearman x100) of the best valid setting."""
        if not np.isfinite(self.grid).any():
            raise DataError(
                "no setting gave a defined Spearman correlation (every similarity was equal): "
                "check the model and the data"
            )
        row, column = np.unravel_index(np.nanargmax(self.grid), self.grid.shape)
        return self.tp_ends[row], self.exits[column], float(self.grid[row, column])

    @property
    def best_baseline(self) -> tuple[int, float]:
        if not np.isfinite(self.baseline).any():
            return self.exits[-1], math.nan
        column = int(np.nanargmax(self.baseline))
        return self.exits[column], float(self.baseline[column])

    def record(self, encoder: TPEncoder, data: str) -> CalibrationRecord:
        tp_end, exit_layer, score = self.best
        template = encoder.tp.template
        return CalibrationRecord(
            model=encoder.model_id,
            pooling=encoder.requested.pooling,
            template=template.name if template.name != "custom" else template.text,
            tp_start=self.tp_start,
            tp_end=tp_end,
            exit_layer=exit_layer,
            num_layers=encoder.tp.num_layers,
            spearman=round(score, 2),
            baseline_spearman=round(self.best_baseline[1], 2),
            data=data,
            pairs=self.pairs,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )


def default_tp_ends(tp_start: int, num_layers: int) -> tuple[int, ...]:
    """TP end layers worth sweeping: the paper's best were 3-8 of 28-42 layers; go to 40%."""
    top = max(tp_start + 1, round(0.4 * num_layers))
    return tuple(range(tp_start + 1, top + 1))


def calibrate(
    encoder: TPEncoder,
    pairs: SentencePairs,
    tp_ends: Sequence[int] | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
) -> CalibrationResult:
    """Sweep the TP end layer (one pass each, every exit layer at once) plus a no-TP pass."""
    if not encoder.tp.template.has_pst:
        raise ConfigError("calibration needs a template with <PST>: Token Prepending sweeps it")
    _require_scorable(pairs)
    num_layers = encoder.tp.num_layers
    tp_start = encoder.tp.tp_start if encoder.tp.tp else 1
    ends = tuple(sorted(set(tp_ends))) if tp_ends else default_tp_ends(tp_start, num_layers)
    if ends[0] <= tp_start or ends[-1] > num_layers:
        raise ConfigError(
            f"TP end layers must lie in {tp_start + 1}..{num_layers} (after tp_start "
            f"{tp_start}, within the model's {num_layers} layers): pass e.g. --tp-ends "
            f"{tp_start + 1}-{max(tp_start + 1, num_layers // 2)}"
        )
    sentences, index = _unique_sentences(pairs)
    exits = tuple(range(1, num_layers + 1))
    variants = [
        encoder.variant(tp=True, tp_start=tp_start, tp_end=end, exit_layer=-1) for end in ends
    ]
    variants.append(encoder.variant(tp=False, exit_layer=-1))
    rows = []
    for done, variant in enumerate(variants):
        step = _offset(progress, done, variants, sentences)
        vectors = variant.encode_all_layers(sentences, batch_size, step)
        scores = pair_spearmans(vectors, index, pairs)
        rows.append([scores[layer] for layer in exits])
    grid = np.array(rows[:-1])
    for row, end in enumerate(ends):
        grid[row, [column for column, layer in enumerate(exits) if layer < end]] = np.nan
    return CalibrationResult(
        tp_start, ends, exits, grid, np.array(rows[-1]), len(pairs), pairs.skipped
    )
