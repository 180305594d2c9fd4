"""Calibrated layer settings, saved per model so that later runs pick them up.

The paper's stated limitation is that the best TP end layer and exit layer differ per model,
data and prompt; `tpsearch calibrate` finds them on a dev set and records them here: a small
JSON file (by default in the user's tpsearch config folder), keyed by model and pooling. A
record may say "TP off": on that model and data no TP setting beat the plain prompt.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tpsearch.engine.settings import LayerPreset
from tpsearch.errors import DataError, TpsearchWarning

# (file, model, pooling) already warned about: every encoder variant resolves its settings,
# and one evaluation builds several, but the user needs to read it once.
_WARNED: set[tuple[str, str, str]] = set()


@dataclass(frozen=True)
class CalibrationRecord:
    """The best setting found for one model and pooling, and the evidence for it."""

    model: str
    pooling: str
    template: str  # builtin name or template text
    tp_start: int
    tp_end: int
    exit_layer: int  # hidden_states index
    num_layers: int
    spearman: float  # x100, on the calibration data
    baseline_spearman: float  # x100, same template without TP, best exit
    data: str  # the file it was calibrated on
    pairs: int
    created: str  # ISO timestamp
    tp: bool = True  # False: the plain prompt at exit_layer scored best (records before: True)
    # The best TP setting minus the best plain prompt, x100, and its 95% bootstrap interval.
    tp_minus_plain: float | None = None
    tp_minus_plain_low: float | None = None
    tp_minus_plain_high: float | None = None

    def as_preset(self) -> LayerPreset:
        where = f"calibrated on {Path(self.data).name}"
        return LayerPreset(
            where if self.tp else f"{where} (plain prompt)",
            self.num_layers,
            self.template,
            self.tp_start,
            self.tp_end,
            self.exit_layer,
            self.tp,
        )


class CalibrationStore:
    """A JSON file of `CalibrationRecord`s; writes are atomic (temp file + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @staticmethod
    def key(model: str, pooling: str) -> str:
        return f"{model}::{pooling}"

    def _read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DataError(
                f"cannot read calibrations from {self.path} ({error}): fix or delete the file"
            ) from error
        return data if isinstance(data, dict) else {}

    def record(self, model: str, pooling: str) -> CalibrationRecord | None:
        entry = self._read().get(self.key(model, pooling))
        if not isinstance(entry, dict):
            return None
        try:
            return CalibrationRecord(**entry)
        except TypeError:
            warnings.warn(
                f"the calibration of {model} in {self.path} is in another version's format "
                "and was ignored: run `tpsearch calibrate` again",
                TpsearchWarning,
                stacklevel=2,
            )
            return None

    def get(self, model: str, pooling: str) -> LayerPreset | None:
        """The calibrated setting for `model` with `pooling`; when there is none but one for
        another pooling, a TpsearchWarning says so (once per file, model and pooling)."""
        record = self.record(model, pooling)
        if record is None:
            self._warn_other_pooling(model, pooling)
        return record.as_preset() if record else None

    def _warn_other_pooling(self, model: str, pooling: str) -> None:
        others = sorted(
            key.rsplit("::", 1)[1]
            for key in self._read()
            if key.rsplit("::", 1)[0] == model and key != self.key(model, pooling)
        )
        memo = (str(self.path.resolve()), model, pooling)
        if not others or memo in _WARNED:
            return
        _WARNED.add(memo)
        warnings.warn(
            f"the calibration of {model} was made with {' and '.join(others)} pooling and is "
            f"not used with {pooling} pooling: run tpsearch calibrate --pooling {pooling}",
            TpsearchWarning,
            stacklevel=3,
        )

    def put(self, record: CalibrationRecord) -> None:
        data = self._read()
        data[self.key(record.model, record.pooling)] = asdict(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".calibrations-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
