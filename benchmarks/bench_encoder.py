"""Speed of the TP engine on a random-weight model of Qwen2.5-0.5B's shape, in one run.

Prints ratios measured in this one run (absolute times on shared machines are noise):

  flops_fraction   achieved model FLOP/s / this machine's bf16 matmul peak     target >= 0.70
                   (2 x decoder parameters through the exit layer x tokens run / time)
  tp_over_plain    TP time / same template without TP, same exit              target <= 1.02
  speedup_vs_research  the research code's path (every layer, then the LM head on every
                   position, fp32 logits) / ours, same TP output and dtype     target >= 1.5
  weight_ratio     4-bit backbone weight bytes / bf16                          target <= 0.5
  peak RSS         of each precision, measured in a child process of its own

    python benchmarks/bench_encoder.py            # builds the model once under ~/.cache
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Qwen2.5-0.5B: 24 layers, hidden 896, 14 heads, 2 KV heads, intermediate 4864, vocab 151936.
SHAPE = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
)
VOCAB = 151936
EXIT = round(27 * 24 / 32)  # the paper's LLaMA-2-7B exit (27 of 32), scaled: 20 of 24
TP_START, TP_END = 1, 5
BATCH, TEXT_TOKENS = 32, 48


def build_model(path: Path) -> Path:
    """Random weights of the real shape, bf16, with the tests' small BPE tokenizer."""
    if (path / "config.json").exists():
        return path
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from tests.tinymodels import build_tokenizer

    tokenizer = build_tokenizer(with_bos=False)
    config = Qwen2Config(
        vocab_size=VOCAB,
        tie_word_embeddings=True,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        **SHAPE,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def texts_of(tokenizer: Any, count: int, tokens: int) -> list[str]:
    """`count` texts of `tokens` tokens each (cut at a token boundary), from real STS sentences."""
    from tpsearch.engine.evaluation import read_pairs, shipped_sts_dev

    words = " ".join(read_pairs(shipped_sts_dev()).first).split()
    out = []
    for i in range(count):
        text = " ".join(words[i * tokens : (i + 2) * tokens])
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        out.append(text[: encoded["offset_mapping"][tokens - 1][1]])
    return out


def matmul_peak() -> float:
    """The best bf16 matmul FLOP/s over shapes like this workload's largest, and a square one."""
    import torch

    best = 0.0
    for m, k, n in ((2048, 896, 4864), (2048, 4864, 896), (2048, 2048, 2048)):
        a, b = torch.randn(m, k, dtype=torch.bfloat16), torch.randn(k, n, dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        runs = []
        for _ in range(7):
            start = time.perf_counter()
            a @ b
            runs.append(time.perf_counter() - start)
        best = max(best, 2 * m * k * n / min(runs))
    return best


def interleaved(a: Callable[[], object], b: Callable[[], object], repeats: int) -> float:
    """min(a) / min(b) over alternating runs: other work on a shared machine only ever adds
    time, so the fastest run of each is the best estimate of its cost, and alternating keeps
    slow phases of the machine from landing on one side."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, sink in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            sink.append(time.perf_counter() - start)
    return min(ta) / min(tb)


def layer_params(backbone: object, depth: int) -> int:
    """Decoder parameters of the first `depth` layers, counted at their logical (unpacked) size."""
    total = 0
    for layer in backbone.layers[:depth]:  # type: ignore[attr-defined]
        for module in layer.modules():
            weight = getattr(module, "weight", None)
            if weight is None or module is layer:
                continue
            shape = getattr(weight, "quant_state", None)
            total += int(shape.shape.numel()) if shape is not None else weight.numel()
            bias = getattr(module, "bias", None)
            total += bias.numel() if bias is not None else 0
    return total


def tokens_run(encoder: object, texts: list[str], depth: int = EXIT) -> int:
    """Tokens that go through the layers (the cached template head does not)."""
    inputs = encoder._batch(encoder.prompt_rows(texts), depth=depth)  # type: ignore[attr-defined]
    return int(inputs.attention_mask.sum())


def timed_rounds(
    encoders: dict[str, Any], texts: list[str], repeats: int
) -> tuple[list[float], dict[str, list[float]]]:
    """Rounds of (matmul peak, one batch per encoder), after a warm-up: a neighbour on a
    shared machine slows whatever runs meanwhile, so each figure is the best of runs spread
    over the whole window. (peaks in FLOP/s, seconds per encoder)"""
    for encoder in encoders.values():
        encoder.encode(texts, batch_size=BATCH)  # warm-up (and the template-head cache)
    peaks: list[float] = []
    runs: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(repeats):
        peaks.append(matmul_peak())
        for name, encoder in encoders.items():
            start = time.perf_counter()
            encoder.encode(texts, batch_size=BATCH)
            runs[name].append(time.perf_counter() - start)
    return peaks, runs


def research_path(
    encoder: object, model_path: Path, texts: list[str]
) -> tuple[Callable[[], object], object]:
    """The research code's path: left-padded batch, every layer, LM head on every position,
    fp32 logits, then hidden_states[exit] at the last token; the same TP copies."""
    import torch
    from transformers import AutoModelForCausalLM

    full = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16)
    full.eval()
    inputs = encoder.build_inputs(texts, padding_side="left")  # type: ignore[attr-defined]
    rows = torch.arange(len(texts))
    pst, last = inputs.pst_index, inputs.last_index
    vector = encoder.pst_vector  # type: ignore[attr-defined]

    def prepend(_module: object, args: tuple, kwargs: dict) -> None:
        h = args[0] if args else kwargs["hidden_states"]
        h[rows, pst] = h[rows, last]

    for i in range(TP_START, TP_END):
        full.model.layers[i].register_forward_pre_hook(prepend, with_kwargs=True)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            embeds = full.model.embed_tokens(inputs.input_ids.clamp(min=0))
            embeds[rows, pst] = vector
            out = full(
                inputs_embeds=embeds,
                attention_mask=inputs.attention_mask,
                position_ids=inputs.position_ids,
                output_hidden_states=True,
            )
            out.logits.float()  # the research code computed fp32 logits for every position
            return torch.nn.functional.normalize(
                out.hidden_states[EXIT][rows, last].float(), dim=-1
            )

    return run, full


def child_memory(precision: str, model_path: Path) -> tuple[float, float]:
    """(peak, final) resident GiB of a fresh process that loads `precision` and encodes a batch."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", precision, "--model", str(model_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    peak, final = out.stdout.strip().splitlines()[-1].split()
    return float(peak), float(final)


def child(precision: str, model_path: Path) -> None:
    from tpsearch import EncoderSettings, TPEncoder

    encoder = TPEncoder(
        EncoderSettings(
            model=str(model_path),
            precision=precision,
            device="cpu",  # type: ignore[arg-type]
            tp_start=TP_START,
            tp_end=TP_END,
            exit_layer=EXIT,
        )
    )
    encoder.encode(texts_of(encoder.backbone.tokenizer, BATCH, TEXT_TOKENS), batch_size=BATCH)
    print(memory_gib("VmHWM"), memory_gib("VmRSS"))


def memory_gib(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process. Both belong to the address space and start
    anew at exec; ru_maxrss would carry the parent's peak over into a child."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 2**20  # kB -> GiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", type=Path, default=Path.home() / ".cache/tpsearch-bench/qwen2.5-0.5b-shape"
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", choices=["bf16", "4bit"])
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model)
        return

    import torch

    from tpsearch import EncoderSettings, TPEncoder

    path = build_model(args.model)
    print(f"model: random weights, Qwen2.5-0.5B shape, at {path}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    results: dict[str, float] = {}
    settings = EncoderSettings(
        model=str(path), device="cpu", tp_start=TP_START, tp_end=TP_END, exit_layer=EXIT
    )
    bf16 = TPEncoder(settings.with_overrides(precision="bf16"))
    encoders = {"bf16": bf16, "4bit": TPEncoder(settings.with_overrides(precision="4bit"))}
    texts = texts_of(bf16.backbone.tokenizer, BATCH, TEXT_TOKENS)
    lengths = [len(row.ids) for row in bf16.prompt_rows(texts)]
    print(
        f"batch: {BATCH} texts of ~{TEXT_TOKENS} tokens (prompts {min(lengths)}-{max(lengths)}"
        f" tokens with template and <PST>); TP layers [{TP_START}, {TP_END}), exit {EXIT}/24"
    )

    peaks, runs = timed_rounds(encoders, texts, args.repeats)
    peak = max(peaks)
    results["matmul_peak_gflops"] = peak / 1e9
    print(
        f"bf16 matmul peak: {peak / 1e9:.1f} GFLOP/s (best of {args.repeats} rounds; lowest "
        f"{min(peaks) / 1e9:.1f})"
    )
    for name, encoder in encoders.items():
        seconds = min(runs[name])  # the fastest, like the peak it is compared with
        flops = 2 * layer_params(encoder.backbone, EXIT) * tokens_run(encoder, texts)
        fraction = flops / seconds / peak
        results[f"flops_fraction_{name}"] = fraction
        results[f"seconds_per_batch_{name}"] = seconds
        results[f"weight_bytes_{name}"] = encoder.backbone.weight_bytes()
        print(
            f"{name}: {seconds:.3f} s/batch (fastest of {args.repeats}; median "
            f"{statistics.median(runs[name]):.3f}), {flops / seconds / 1e9:.1f} GFLOP/s = "
            f"{fraction:.2f} of peak (target >= 0.70)"
        )
    del encoders

    plain = bf16.variant(tp=False)
    ratio = interleaved(
        lambda: bf16.encode(texts, BATCH), lambda: plain.encode(texts, BATCH), 2 * args.repeats + 1
    )
    results["tp_over_plain"] = ratio
    extra = tokens_run(bf16, texts) / tokens_run(plain, texts)
    results["tp_tokens_over_plain"] = extra
    print(
        f"TP / no TP (bf16, exit {EXIT}): {ratio:.3f} (target <= 1.02); the <PST> slot is one "
        f"token more per prompt: {extra:.3f}x the tokens"
    )
    # About as many tokens on both sides (the plain prompts get one more text token): what
    # the copies into the slot cost, apart from the slot's own token.
    longer = texts_of(bf16.backbone.tokenizer, BATCH, TEXT_TOKENS + 1)
    same = interleaved(
        lambda: bf16.encode(texts, BATCH), lambda: plain.encode(longer, BATCH), 2 * args.repeats + 1
    )
    results["tp_over_plain_same_tokens"] = same
    print(
        f"TP / no TP with the plain texts one token longer ({tokens_run(bf16, texts)} and "
        f"{tokens_run(plain, longer)} tokens run): {same:.3f}"
    )

    no_cache, cache = bf16.variant(prefix_cache="off"), bf16.variant(prefix_cache="on")
    cache_ratio = interleaved(
        lambda: no_cache.encode(texts, BATCH), lambda: cache.encode(texts, BATCH), args.repeats
    )
    results["no_prefix_cache_over_cache"] = cache_ratio
    print(f"without / with the template-head KV cache: {cache_ratio:.3f}")

    research, full = research_path(bf16, path, texts)
    ours = torch.from_numpy(bf16.variant(prefix_cache="off").encode(texts, BATCH))
    agreement = float((research() * ours).sum(dim=1).min())
    speedup = interleaved(research, lambda: bf16.encode(texts, BATCH), args.repeats)
    del full
    results["speedup_vs_research"] = speedup
    results["research_vs_ours_min_cosine"] = agreement
    print(
        f"research path (24 layers + LM head on all positions, fp32 logits) / ours: "
        f"{speedup:.2f}x (target >= 1.5); same output: min cosine {agreement:.4f}"
    )

    weight_ratio = results["weight_bytes_4bit"] / results["weight_bytes_bf16"]
    results["weight_ratio_4bit_over_bf16"] = weight_ratio
    print(
        f"weights: 4bit {results['weight_bytes_4bit'] / 2**20:.0f} MiB, bf16 "
        f"{results['weight_bytes_bf16'] / 2**20:.0f} MiB: ratio {weight_ratio:.3f} (target <= 0.5)"
    )
    for name in ("bf16", "4bit"):
        peak, final = child_memory(name, path)
        results[f"peak_rss_gib_{name}"], results[f"rss_after_gib_{name}"] = peak, final
        print(
            f"resident memory, {name}: peak {peak:.2f} GiB (loading included), {final:.2f} GiB "
            "after loading and one batch"
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
