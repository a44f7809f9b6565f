"""The rules tier: taxonomy keywords, VADER's lexicon and the language detector, vectorized.

Every label comes with a confidence in [0, 1] and the method that produced it. Below the
threshold the label is the dimension's fallback (`other` / `uncertain`), never a guess.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import polars as pl

from analytics_assets.categorization.taxonomy import Taxonomy

DEFAULT_THRESHOLD = 0.5
# VADER's own constants: compound = s / sqrt(s^2 + alpha); a negation scales by -0.74;
# |compound| >= 0.05 is its boundary between neutral and polar.
VADER_ALPHA = 15.0
VADER_NEGATION_SCALE = -0.74
VADER_NEUTRAL_BOUND = 0.05
# Where the lexicon's polar call is trusted. One mildly polar word makes VADER's compound
# 0.3-0.45 ("Can you help me write a cover letter?" is 0.40 on "help"), which reads the
# request's words, not the user's tone:
# with VADER's own 0.05, 57 % of the real ShareGPT dev openings (nearly all neutral) were
# `positive`. Between the two bounds the lexicon abstains and the sentiment head decides.
# Chosen on the dev halves of the ShareGPT and support sets (docs/categorization.md): at 0.5
# support macro-F1 0.745 -> 0.756 (English 0.551 -> 0.663) with the support sentiment head,
# and ShareGPT accuracy 0.344 -> 0.624 with the assistant taxonomy's own; higher bounds
# helped ShareGPT further but cost English support texts.
LEXICON_POLAR_BOUND = 0.5
NEGATIONS = (
    "not", "no", "never", "none", "nobody", "nothing", "cannot", "don't", "doesn't",
    "didn't", "isn't", "wasn't", "aren't", "won't", "can't", "couldn't", "shouldn't",
)  # fmt: skip


def rule_confidence(top_hits: pl.Expr, second_hits: pl.Expr) -> pl.Expr:
    """1 hit -> 0.5, 2 -> 0.75, 3 -> 0.875 ..., scaled by how clearly it beats the runner-up."""
    total = top_hits + second_hits
    return (1 - 0.5**top_hits) * pl.when(total > 0).then(top_hits / total).otherwise(0.0)


def classify(
    frame: pl.DataFrame,
    text: str,
    dimension: str,
    taxonomy: Taxonomy,
    *,
    prefix: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> pl.DataFrame:
    """Adds `<prefix>`, `<prefix>_confidence`, `<prefix>_method` from the dimension's rules."""
    prefix = prefix or dimension
    labels = [label for label in taxonomy.labels[dimension].values() if label.regex()]
    fallback = taxonomy.fallbacks[dimension]
    if not labels:
        return frame.with_columns(
            pl.lit(fallback).alias(prefix),
            pl.lit(0.0).alias(f"{prefix}_confidence"),
            pl.lit("fallback").alias(f"{prefix}_method"),
        )
    lowered = pl.col(text).fill_null("").str.to_lowercase()
    # In stages, each computed once: hits per label, then the best two, then the label.
    # (Horizontal expressions: sorting a list per row is ~50x slower.)
    hit_columns = [f"_hits_{index}" for index in range(len(labels))]
    hits = [pl.col(name) for name in hit_columns]
    staged = frame.with_columns(
        lowered.str.count_matches(label.regex()).cast(pl.Float64).alias(name)
        for label, name in zip(labels, hit_columns, strict=True)
    ).with_columns(pl.max_horizontal(hits).alias("_top"))
    top = pl.col("_top")
    tied = pl.sum_horizontal([(count == top).cast(pl.Int32) for count in hits])
    below = pl.max_horizontal([pl.when(count < top).then(count).otherwise(0.0) for count in hits])
    staged = staged.with_columns(
        pl.when(tied > 1).then(top).otherwise(below).alias("_second"),
        # The first label (in taxonomy order) with the most hits.
        pl.coalesce(
            [
                pl.when(count == top).then(pl.lit(label.name))
                for count, label in zip(hits, labels, strict=True)
            ]
        ).alias("_best"),
    ).with_columns(rule_confidence(top, pl.col("_second")).alias("_confidence"))
    decided = (top > 0) & (pl.col("_confidence") >= threshold)
    return staged.with_columns(
        pl.when(decided).then(pl.col("_best")).otherwise(pl.lit(fallback)).alias(prefix),
        pl.when(top > 0).then(pl.col("_confidence")).otherwise(0.0).alias(f"{prefix}_confidence"),
        pl.when(decided)
        .then(pl.lit("rules"))
        .otherwise(pl.lit("fallback"))
        .alias(f"{prefix}_method"),
    ).drop(*hit_columns, "_top", "_second", "_best", "_confidence")


@cache
def vader_lexicon() -> pl.DataFrame:
    """VADER's lexicon (word, mean valence), read from the vaderSentiment package's file."""
    text = resources.files("vaderSentiment").joinpath("vader_lexicon.txt").read_text("utf-8")
    rows = [line.split("\t")[:2] for line in text.splitlines() if line.strip()]
    return pl.DataFrame(
        {"token": [row[0] for row in rows], "valence": [float(row[1]) for row in rows]}
    ).unique("token", keep="first")


def lexicon_compound(frame: pl.DataFrame, text: str) -> pl.Series:
    """VADER's compound score from its lexicon, vectorized (valence sum, negation, normalized).

    Leaves out VADER's boosters, capitals and "but" rules: a few points of accuracy for two
    orders of magnitude in speed.
    """
    tokens = (
        frame.select(
            pl.col(text)
            .fill_null("")
            .str.to_lowercase()
            # "don’t" (a phone's apostrophe) is "don't": split at the curly one, its "t"
            # negated nothing and "I don’t love it" read as love.
            .str.replace_all("\u2019", "'", literal=True)
            # Punctuation that ends a clause is kept as a token: a negation does not
            # reach past it ("No, it works great now" is not "not great").
            .str.extract_all(r"[\w']+|[:;]-?[()dp]|[.,!?;]")
        )
        .with_row_index("_row")
        .explode(text)
        .rename({text: "token"})
        .with_columns(
            (pl.col("token").is_in(NEGATIONS) | pl.col("token").str.ends_with("n't"))
            .fill_null(False)
            .alias("_negation"),
            pl.col("token").is_in([".", ",", "!", "?", ";"]).fill_null(False).alias("_break"),
        )
        .with_columns(pl.col("_break").cum_sum().alias("_clause"))
    )
    # As VADER: each negation among the three tokens before a word, in the same clause,
    # scales its valence by -0.74 ("not very happy", "not really great"; only the token
    # right before was read, and both were positive). "no" reaches only the next word ("no
    # problem"), as in VADER. The shifts stay within a text and a clause (a global shift is
    # far cheaper than `over`).
    negations = sum(
        (
            (pl.col("_row") == pl.col("_row").shift(distance))
            & (pl.col("_clause") == pl.col("_clause").shift(distance))
            & pl.col("_negation").shift(distance).fill_null(False)
            & ((distance == 1) | (pl.col("token").shift(distance) != "no"))
        ).cast(pl.Int32)
        for distance in (1, 2, 3)
    )
    scored = (
        tokens.with_columns(negations.alias("_negations"))
        .join(vader_lexicon(), on="token", how="inner")
        .with_columns(
            (pl.col("valence") * pl.lit(VADER_NEGATION_SCALE).pow(pl.col("_negations"))).alias(
                "valence"
            )
        )
    )
    sums = scored.group_by("_row").agg(pl.col("valence").sum())
    return (
        pl.DataFrame({"_row": pl.arange(0, frame.height, eager=True).cast(pl.UInt32)})
        .join(sums, on="_row", how="left")
        .select(
            pl.col("valence").fill_null(0.0)
            / (pl.col("valence").fill_null(0.0) ** 2 + VADER_ALPHA).sqrt()
        )
        .to_series()
    )


def sentiment(
    frame: pl.DataFrame,
    text: str,
    taxonomy: Taxonomy,
    *,
    prefix: str = "sentiment",
    language: str | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> pl.DataFrame:
    """Taxonomy rules first (they cover other languages); else VADER's lexicon for English
    where it is clear: neutral below VADER's bound, polar from `LEXICON_POLAR_BOUND`.

    Text in another language that no rule matched, and English the lexicon is unsure of,
    is `uncertain` (method `fallback`, for the sentiment head to decide): an English lexicon
    would call it neutral, a guess dressed as certain.
    """
    ruled = classify(frame, text, "sentiment", taxonomy, prefix=f"_{prefix}", threshold=threshold)
    compound = lexicon_compound(frame, text)
    bound = VADER_NEUTRAL_BOUND
    lexicon_label = (
        pl.when(pl.col("_compound") >= bound)
        .then(pl.lit("positive"))
        .when(pl.col("_compound") <= -bound)
        .then(pl.lit("negative"))
        .otherwise(pl.lit("neutral"))
    )
    # Polar: 0.5 at the boundary rising to 1; neutral: 1 at 0 falling to 0.5 at the boundary.
    lexicon_confidence = (
        pl.when(pl.col("_compound").abs() >= bound)
        .then(0.5 + pl.col("_compound").abs() / 2)
        .otherwise(1 - pl.col("_compound").abs() / bound / 2)
    )
    english = pl.lit(True) if language is None else pl.col(language).is_in(["en"])
    magnitude = pl.col("_compound").abs()
    lexicon_decides = english & ((magnitude < bound) | (magnitude >= LEXICON_POLAR_BOUND))
    use_rules = pl.col(f"_{prefix}_method") == "rules"
    fallback = taxonomy.fallbacks["sentiment"]
    return ruled.with_columns(_compound=compound).with_columns(
        pl.when(use_rules).then(pl.col(f"_{prefix}")).when(lexicon_decides).then(lexicon_label)
        .otherwise(pl.lit(fallback)).alias(prefix),
        pl.when(use_rules).then(pl.col(f"_{prefix}_confidence")).when(lexicon_decides)
        .then(lexicon_confidence).otherwise(0.0).alias(f"{prefix}_confidence"),
        pl.when(use_rules).then(pl.lit("rules")).when(lexicon_decides).then(pl.lit("lexicon"))
        .otherwise(pl.lit("fallback")).alias(f"{prefix}_method"),
        pl.col("_compound").alias(f"{prefix}_score"),
    ).drop("_compound", f"_{prefix}", f"_{prefix}_confidence", f"_{prefix}_method")  # fmt: skip
