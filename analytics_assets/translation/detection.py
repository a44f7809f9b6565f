"""Language per message and per conversation. The detector is categorization's (one lingua
detector per process, one place): this module only adds the conversation view."""

from __future__ import annotations

import polars as pl

from analytics_assets.categorization.language import UNKNOWN, detect_languages
from analytics_assets.transforms.records import newest_copies

# A second language that carries at least this share of a conversation's user text makes it
# mixed (a user switching languages, or quoting an error message in English).
MIXED_SHARE = 0.2

CONVERSATION_LANGUAGE_SCHEMA = {
    "conversation_id": pl.String(),
    "dominant_language": pl.String(),
    "dominant_share": pl.Float64(),
    "mixed_language": pl.Boolean(),
    "languages": pl.List(pl.String()),
    "language_confidence": pl.Float64(),
}


def message_languages(messages: pl.DataFrame, known: pl.DataFrame | None = None) -> pl.DataFrame:
    """`messages` with each message's language and confidence. `known` (message_id,
    language, language_confidence: message_signals' rows) is reused as it is; only the
    messages it lacks (the assistant's, system and tool messages) are detected, so no message
    is detected twice."""
    if known is None or known.is_empty():
        return pl.concat([messages, detect_languages(messages["content"])], how="horizontal")
    # A message id is one message within a day only: over a range run's days the same id
    # can be another conversation's message, or a copy held again after midnight.
    keys = [k for k in ("day", "conversation_id", "message_id") if k in messages.columns
            and k in known.columns]  # fmt: skip
    reused = messages.join(
        known.select(*keys, "language", "language_confidence").unique(keys),
        on=keys,
        how="left",
    )
    missing = reused["language"].is_null()
    if not missing.any():
        return reused
    detected = detect_languages(reused.filter(missing)["content"])
    rows = missing.arg_true()
    return reused.with_columns(
        reused[column].clone().scatter(rows, detected[column])
        for column in ("language", "language_confidence")
    )


def conversation_languages(conversations: pl.DataFrame, signals: pl.DataFrame) -> pl.DataFrame:
    """One row per conversation of `conversations` (conversation_id, day), from the language
    of its user messages (`signals`: conversation_id, language, language_confidence,
    characters): the dominant language by share of characters written, whether a second
    language reaches 20 %, and a confidence = dominant share × mean detector confidence of
    its messages. A conversation whose user wrote nothing recognizable is `unknown`."""
    # Over D and D+1 a message NocoDB holds on both days (a re-delivery after midnight) has
    # a signal on each: counted once, as the conversation's other figures count it.
    if "message_id" in signals.columns:
        signals = newest_copies(signals)
    known = signals.filter(pl.col("language") != UNKNOWN)
    per_language = (
        known.rename({"characters": "_chars"})
        .group_by("conversation_id", "language")
        .agg(pl.col("_chars").sum(), pl.col("language_confidence").mean().alias("_confidence"))
        .with_columns(
            (pl.col("_chars") / pl.col("_chars").sum().over("conversation_id")).alias("_share")
        )
        .sort(["conversation_id", "_share", "language"], descending=[False, True, False])
    )
    dominant = per_language.group_by("conversation_id", maintain_order=True).agg(
        pl.col("language").first().alias("dominant_language"),
        pl.col("_share").first().alias("dominant_share"),
        (pl.col("_share").filter(pl.col("_share") >= MIXED_SHARE).len() > 1).alias(
            "mixed_language"
        ),
        pl.col("language").alias("languages"),
        (pl.col("_share").first() * pl.col("_confidence").first()).alias("language_confidence"),
    )
    return (
        conversations.select("conversation_id", "day")
        .unique("conversation_id", keep="first", maintain_order=True)
        .join(dominant, on="conversation_id", how="left")
        .with_columns(
            pl.col("dominant_language").fill_null(UNKNOWN),
            pl.col("dominant_share").fill_null(0.0),
            pl.col("mixed_language").fill_null(False),
            pl.col("languages").fill_null([]),
            pl.col("language_confidence").fill_null(0.0),
        )
        .cast(CONVERSATION_LANGUAGE_SCHEMA)
        .select(*CONVERSATION_LANGUAGE_SCHEMA, "day")
    )
