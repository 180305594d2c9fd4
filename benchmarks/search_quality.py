"""Search, dedupe and clusters on real embeddings: raw vectors against the centred space.

On a collection of the FastAPI docs with the planted near-copies of data/fastapi-plants/
(built here with the default packaged model unless --collection names one):

- retrieval on data/retrieval/fastapi-queries.tsv, per mode (lexical / semantic / hybrid),
  with semantic scores raw and centred (hybrid fusion is the same rule either way);
- dedupe: planted copies found (in one group with their original) and false groups (groups
  holding two pages that are not a plant and its original), all methods and semantic alone,
  at file level; semantic groups at chunk level;
- cluster -k auto: k chosen, silhouette, distinct labels.

    python benchmarks/search_quality.py                      # builds ~/.cache/tpsearch-bench/...
    python benchmarks/search_quality.py --collection /tmp/fa12/.tpsearch

Building indexes 4,700+ chunks with SmolLM2-135M in 4-bit: about 20 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PLANTS = REPO / "data/fastapi-plants"
ORIGINALS = {
    "exact-copy-of-debugging.md": "tutorial/debugging.md",
    "reflowed-response-headers.md": "advanced/response-headers.md",
    "one-word-cors.md": "tutorial/cors.md",
    "minus-paragraph-background-tasks.md": "tutorial/background-tasks.md",
    "paraphrased-static-files.md": "tutorial/static-files.md",
    "rewritten-debugging.md": "tutorial/debugging.md",
}


def build(folder: Path, model: str) -> Path:
    """A collection of the docs and the plants under `folder` (reused when it exists)."""
    from tpsearch.collection import Collection

    docs = folder / "fastapi-docs"
    if not docs.exists():
        shutil.copytree(REPO / "data/fastapi-docs", docs)
        (docs / "plants").mkdir()
        for name in ORIGINALS:
            shutil.copy(PLANTS / name, docs / "plants" / name)
    with Collection.locate(folder, create=True) as col:
        started = time.monotonic()
        print(col.index([docs], overrides={"model": model}).line(), flush=True)
        print(f"indexed in {time.monotonic() - started:.0f} s")
        return col.folder


def planted_pairs(paths: list[str]) -> set[frozenset[str]]:
    by_tail = {p.split("/", 1)[1] if "/" in p else p: p for p in paths}
    pairs = set()
    for plant, original in ORIGINALS.items():
        if f"plants/{plant}" in by_tail and original in by_tail:
            pairs.add(frozenset((by_tail[f"plants/{plant}"], by_tail[original])))
    return pairs


def dedupe_figures(col: Any, corrected: bool) -> dict[str, Any]:
    from tpsearch.analysis import DedupeSettings

    out: dict[str, Any] = {}
    paths = list(col.store.file_ids())
    planted = planted_pairs(paths)
    for method in ("all", "semantic"):
        report = col.dedupe("file", DedupeSettings(method=method), corrected=corrected)
        groups = [{m.item.path for m in g.members} for g in report.groups]
        found = sum(any(pair <= group for group in groups) for pair in planted)
        allowed = [set().union(*[p for p in planted if p & group]) for group in groups]
        false = sum(not group <= ok for group, ok in zip(groups, allowed, strict=True))
        out[method] = {"planted_found": found, "planted": len(planted), "false_groups": false}
    chunks = col.dedupe("chunk", DedupeSettings(method="semantic"), corrected=corrected)
    out["chunk_semantic_groups"] = len(chunks.groups)
    out["chunk_semantic_passages"] = chunks.duplicate_count
    return out


def cluster_figures(col: Any, corrected: bool) -> dict[str, Any]:
    report = col.cluster("file", corrected=corrected).report
    labels = [", ".join(c.keywords[:3]) for c in report.clusters]
    return {
        "k": report.k,
        "silhouette": report.silhouette,
        "distinct_labels": len(set(labels)),
        "labels": labels,
    }


def retrieval_figures(col: Any, corrected: bool) -> dict[str, dict[str, float]]:
    from tpsearch.collection.retrieval_eval import evaluate_retrieval, read_judged

    judged = read_judged(REPO / "data/retrieval/fastapi-queries.tsv")
    report = evaluate_retrieval(col, judged, corrected=corrected)
    return {m.mode: m.means.as_dict() for m in report.modes if m.means is not None}


def main() -> None:
    from tpsearch.collection import Collection
    from tpsearch.engine.settings import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", type=Path, help="a .tpsearch folder to measure")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="when building")
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache/tpsearch-bench/fastapi-quality"
    )
    args = parser.parse_args()
    folder = args.collection or build(args.cache / args.model.replace("/", "_"), args.model)
    with Collection.open(folder) as col:
        model, chunks = col.store.get_meta("model_id"), col.status().chunks
        print(f"collection {folder}: model {model}, {chunks} chunks")
        for corrected in (False, True):
            space = "centred" if corrected else "raw"
            print(f"\n== {space} vectors")
            for mode, means in retrieval_figures(col, corrected).items():
                line = "  ".join(f"{k} {v:.3f}" for k, v in means.items())
                print(f"retrieval {mode:8s} {line}")
            for method, figures in dedupe_figures(col, corrected).items():
                print(f"dedupe {method}: {figures}")
            clusters = cluster_figures(col, corrected)
            print(
                f"cluster -k auto: k={clusters['k']} silhouette {clusters['silhouette']:.3f}, "
                f"{clusters['distinct_labels']} distinct labels: {'; '.join(clusters['labels'])}"
            )


if __name__ == "__main__":
    main()
