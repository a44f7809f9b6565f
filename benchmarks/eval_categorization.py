"""Accuracy and macro-F1 per label on held-out labelled sets, for the closing notes.

1. A labelled set from the generator with a seed the tests do not use (its phrases come from
   the same phrase bank the taxonomy's keywords were written against, so it flatters the
   rules: read it as a regression check, not as field accuracy);
2. phrases held out entirely (never seen in training): zero-shot vs a head trained on the
   rest, the honest measure of generalization.

    .venv/bin/python benchmarks/eval_categorization.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization.conversations import categorize_texts
from analytics_assets.categorization.embeddings import SentenceEmbedder
from analytics_assets.categorization.model_tier import ModelTier, ZeroShot, score, train_head
from analytics_assets.categorization.taxonomy import load_taxonomy
from analytics_assets.sources.generator import SampleSpec, generate_sample

DIMENSIONS = ("topic", "intent", "language")


def report(name: str, truth: list[str], predicted: list[str], fallbacks: list[str]) -> None:
    scores = score(truth, predicted, fallbacks)
    print(
        f"  {name:<9} accuracy {scores.accuracy:.3f}  macro-F1 {scores.macro_f1:.3f}  "
        f"abstention {scores.abstention:.3f}"
    )


def main() -> None:
    taxonomy = load_taxonomy()
    data = generate_sample(SampleSpec(days=3, conversations=1000, seed=2026))
    labels = pl.DataFrame(data.labels)
    texts = labels.select(pl.col("conversation_id").alias("id"), pl.col("opening").alias("text"))
    embedder = SentenceEmbedder("cpu")
    for tier, model in (("rules", None), ("model", ModelTier.build(embedder, taxonomy))):
        predicted = categorize_texts(texts, taxonomy, model=model)
        print(f"{tier} tier on {labels.height} labelled openings (seed 2026):")
        for dimension in DIMENSIONS:
            report(
                dimension,
                labels[dimension].to_list(),
                predicted[dimension].to_list(),
                [taxonomy.fallbacks.get(dimension, "unknown"), "unknown"],
            )

    openings = labels["opening"].to_list()
    vectors = embedder.embed(openings)
    phrases = sorted(set(openings))
    np.random.default_rng(1).shuffle(phrases)
    held_out = set(phrases[: len(phrases) // 4])
    train = np.array([i for i, text in enumerate(openings) if text not in held_out])
    test = np.array([i for i, text in enumerate(openings) if text in held_out])
    print(
        f"held-out phrases ({len(held_out)} phrases, {len(test)} openings never seen in training):"
    )
    for dimension in ("topic", "intent"):
        truth = labels[dimension].to_list()
        expected = [truth[i] for i in test]
        zero_shot = ZeroShot.from_taxonomy(taxonomy, dimension, embedder.embed)
        zero_shot.fit_temperature(vectors[train], [truth[i] for i in train])
        head = train_head(vectors[train], [truth[i] for i in train], fallback="other")
        report(f"{dimension} 0-shot", expected, zero_shot.predict(vectors[test], 0.0).labels, [])
        report(f"{dimension} head", expected, head.predict(vectors[test], 0.0).labels, [])


if __name__ == "__main__":
    main()
