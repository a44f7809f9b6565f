"""Quality signals of a translation, stored with it: is it in the target language, is its
length plausible for the language pair, and chrF against a reference when there is one."""

from __future__ import annotations

import polars as pl

from analytics_assets.categorization.language import UNKNOWN, detect_languages

# Scripts that pack a word into one or two characters: a translation between them and an
# alphabetic language changes length by a factor of about 2-4.
DENSE_SCRIPTS = {"zh", "ja", "ko"}
RATIO_BOUNDS = {
    "same": (0.5, 2.0),  # alphabetic to alphabetic (or dense to dense)
    "to_dense": (0.1, 1.0),
    "from_dense": (1.0, 8.0),
}


def ratio_bounds(source: str, target: str) -> tuple[float, float]:
    if (source in DENSE_SCRIPTS) == (target in DENSE_SCRIPTS):
        return RATIO_BOUNDS["same"]
    return RATIO_BOUNDS["to_dense" if target in DENSE_SCRIPTS else "from_dense"]


def chrf(hypothesis: str, reference: str) -> float:
    from sacrebleu.metrics import CHRF

    return round(CHRF().sentence_score(hypothesis, [reference]).score, 2)


def score_translations(frame: pl.DataFrame, references: dict[tuple[str, ...], str]) -> pl.DataFrame:
    """`frame` has source_text, text, source_language, target_language, message_id (and
    conversation_id); adds detected_language, target_language_ok, length_ratio,
    length_ratio_ok, chrf. `references`: (message_id, language) or (conversation_id,
    message_id, language) -> reference text."""
    if frame.is_empty():
        return frame.with_columns(
            pl.lit(None, pl.String).alias("detected_language"),
            pl.lit(None, pl.Boolean).alias("target_language_ok"),
            pl.lit(None, pl.Float64).alias("length_ratio"),
            pl.lit(None, pl.Boolean).alias("length_ratio_ok"),
            pl.lit(None, pl.Float64).alias("chrf"),
        )
    detected = detect_languages(frame["text"])["language"]
    ratio = frame["text"].str.len_chars() / frame["source_text"].str.len_chars()
    bounds = [
        ratio_bounds(s, t)
        for s, t in frame.select("source_language", "target_language").iter_rows()
    ]
    ratio_ok = [
        low <= value <= high if value is not None else None
        for value, (low, high) in zip(ratio.to_list(), bounds, strict=True)
    ]
    # A reference table that names the conversation is keyed by it too (a message id is one
    # message within its conversation); one without it, by the message id alone.
    conversations = (
        frame["conversation_id"] if "conversation_id" in frame.columns
        else pl.Series([None] * frame.height, dtype=pl.String)
    )  # fmt: skip
    scores = []
    for conversation_id, message_id, target, text in zip(
        conversations, frame["message_id"], frame["target_language"], frame["text"], strict=True
    ):
        reference = references.get((conversation_id, message_id, target))
        if reference is None:
            reference = references.get((message_id, target))
        scores.append(chrf(text, reference) if reference is not None else None)
    return frame.with_columns(
        detected.alias("detected_language"),
        # Text too short to tell (`unknown`) says nothing either way.
        pl.when(detected != UNKNOWN)
        .then(detected == frame["target_language"])
        .alias("target_language_ok"),
        ratio.round(3).alias("length_ratio"),
        pl.Series("length_ratio_ok", ratio_ok, dtype=pl.Boolean),
        pl.Series("chrf", scores, dtype=pl.Float64),
    )
