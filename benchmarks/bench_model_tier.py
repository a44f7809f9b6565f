"""Model-tier throughput: messages/s embedding + labelling with all-MiniLM-L6-v2.

Ours batches texts sorted by length (little padding) and labels topic and intent from one
embedding; the baseline is the naive loop (tokenize and embed one message at a time), both
measured in this run on the same messages. On a CUDA machine pass --device cuda (or auto) to
get the GPU figure; the script then also prints the GPU/CPU ratio and the cosine agreement
of the two devices' embeddings.

    .venv/bin/python benchmarks/bench_model_tier.py [--messages 3000] [--device auto]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization.device import resolve_device
from analytics_assets.categorization.embeddings import SentenceEmbedder
from analytics_assets.categorization.model_tier import ModelTier
from analytics_assets.categorization.taxonomy import load_taxonomy
from analytics_assets.sources.generator import generate_sample


def rate(model: ModelTier, texts: list[str]) -> float:
    model.predict(texts[:64])  # warm up
    started = time.perf_counter()
    model.predict(texts)
    return len(texts) / (time.perf_counter() - started)


def naive_rate(embedder: SentenceEmbedder, texts: list[str]) -> float:
    started = time.perf_counter()
    for text in texts:
        embedder.embed([text])
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--naive-messages", type=int, default=300)
    parser.add_argument("--device", default="cpu", choices=["auto", "cuda", "cpu"])
    args = parser.parse_args()
    taxonomy = load_taxonomy()
    texts = [m["content"] for m in generate_sample().messages if m["content"]][: args.messages]

    cpu = SentenceEmbedder("cpu")
    cpu_model = ModelTier.build(cpu, taxonomy)
    cpu_rate = rate(cpu_model, texts)
    naive = naive_rate(cpu, texts[: args.naive_messages])
    print(f"CPU batched, sorted by length: {cpu_rate:,.0f} messages/s ({len(texts):,} messages)")
    print(f"CPU naive one-by-one loop    : {naive:,.0f} messages/s; ratio {cpu_rate / naive:.1f}x")

    device = resolve_device(args.device)
    if device == "cuda":
        gpu = SentenceEmbedder("cuda", batch_size=1024)
        gpu_rate = rate(ModelTier.build(gpu, taxonomy), texts)
        sample = texts[:500]
        agreement = np.sum(gpu.embed(sample) * cpu.embed(sample), axis=1)
        print(f"GPU: {gpu_rate:,.0f} messages/s; GPU/CPU ratio {gpu_rate / cpu_rate:.1f}x")
        print(f"CPU/GPU embedding cosine: min {agreement.min():.5f}, mean {agreement.mean():.5f}")
    else:
        print("No CUDA device here: GPU figures need a machine with one (--device cuda).")


if __name__ == "__main__":
    main()
