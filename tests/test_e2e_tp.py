"""End to end with the real Token Prepending engine on a tiny offline model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.corpus import write_corpus
from tests.tinymodels import save_tiny_model
from tpsearch.collection import Collection
from tpsearch.collection.chunking import embedding_text
from tpsearch.engine.settings import EncoderSettings
from tpsearch.engine.token_prepending import TPEncoder
from tpsearch.errors import CollectionError


def test_index_and_query_with_the_real_engine(tmp_path: Path) -> None:
    model = save_tiny_model(tmp_path / "model", "qwen2")
    docs = write_corpus(tmp_path)
    flags = {"model": str(model), "precision": "fp32", "device": "cpu"}
    with Collection.locate(tmp_path, create=True) as col:
        summary = col.index([docs], overrides=flags)
        counts = col.store.counts()
        assert summary.new == 3 and counts["pending"] == 0 and summary.embedded == counts["chunks"]

        # The stored settings are the resolved ones: rebuilt, they give the same vectors.
        stored = col.stored_settings()
        assert stored is not None and stored.model == str(model)
        assert None not in (stored.tp_start, stored.tp_end, stored.exit_layer, stored.template)
        rebuilt = TPEncoder(EncoderSettings.from_dict(stored.to_dict()))
        assert rebuilt.fingerprint == col.store.get_meta("fingerprint")
        ((heading, text, blob),) = col.store.query(
            "SELECT c.heading, c.text, v.vector FROM chunks c JOIN vectors v ON v.chunk_id = c.id"
            " ORDER BY c.id LIMIT 1"
        )
        again = rebuilt.encode([embedding_text(heading, text)])[0]
        np.testing.assert_allclose(np.frombuffer(blob, dtype="<f4"), again, atol=1e-4)

        result = col.query("firewall port")  # the stored settings, loaded once more
        assert result.used == "hybrid" and result.notices == [] and result.hits
        assert col.status().model_id and col.status().fingerprint

        assert col.index().unchanged == 3  # no flags: the stored settings apply, nothing to do
        with pytest.raises(CollectionError, match="--reembed"):
            col.index(overrides={"pooling": "mean"})


def test_index_reports_truncated_chunks_once(tmp_path: Path) -> None:
    """The encoder warns per call; a run of many calls says it once, with the total."""
    import warnings

    model = save_tiny_model(tmp_path / "model", "qwen2")
    docs = write_corpus(tmp_path)
    flags = {"model": str(model), "precision": "fp32", "device": "cpu", "max_length": 32}
    with (
        Collection.locate(tmp_path, create=True) as col,
        warnings.catch_warnings(record=True) as seen,
    ):
        warnings.simplefilter("always")
        summary = col.index([docs], overrides=flags, batch_size=1)  # one encode call per group
        assert summary.embedded > 8  # more than one group of 8 x batch size: several calls
        assert 0 < summary.truncated <= summary.embedded
        assert [w for w in seen if "max length" in str(w.message)] == []
        (notice,) = [n for n in summary.notices if "max length" in n]
        assert f"{summary.truncated} of {summary.embedded} chunks" in notice
        assert "--max-length" in notice
