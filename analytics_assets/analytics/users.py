"""Per-user analytics for a day: activity, topics, sentiment, satisfaction, models, and
whether the user came back (seen in the 7 / 30 days before)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

USER_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "period": pl.String(),
    "conversations": pl.UInt32(),
    "messages": pl.UInt32(),
    "topics": pl.List(pl.String()),
    "models": pl.List(pl.String()),
    "sentiment_end_mean": pl.Float64(),
    "satisfaction_mean": pl.Float64(),
    "quality_mean": pl.Float64(),
    # How many of the day's conversations each mean is over (the rest have no score): what
    # a mean over several days weighs each day's by (`return_prediction.user_day_rows`).
    "sentiment_end_scored": pl.UInt32(),
    "quality_scored": pl.UInt32(),
    "first_seen": pl.Date(),
    "last_seen": pl.Date(),
    "returned_within_7d": pl.Boolean(),
    "returned_within_30d": pl.Boolean(),
    "day": pl.Date(),
}
HISTORY_DAYS = 30


def user_analytics(day: date, window: pl.DataFrame) -> pl.DataFrame:
    """`window`: conversation analytics of the day and of the 30 days before it (more days do
    no harm). first_seen looks back 30 days at most."""
    today = window.filter(pl.col("day") == day)
    before = (
        window.filter(
            pl.col("day").is_between(day - timedelta(days=HISTORY_DAYS), day - timedelta(days=1))
        )
        .group_by("user_id")
        .agg(pl.col("day").min().alias("_first"), pl.col("day").max().alias("_last"))
    )
    per_user = today.group_by("user_id").agg(
        pl.len().cast(pl.UInt32).alias("conversations"),
        pl.col("message_count").sum().cast(pl.UInt32).alias("messages"),
        pl.col("topic").drop_nulls().unique().sort().alias("topics"),
        pl.col("model").drop_nulls().unique().sort().alias("models"),
        pl.col("sentiment_end_score").mean().alias("sentiment_end_mean"),
        pl.col("satisfaction_score").mean().alias("satisfaction_mean"),
        pl.col("quality_score").mean().alias("quality_mean"),
        pl.col("sentiment_end_score").count().alias("sentiment_end_scored"),
        pl.col("quality_score").count().alias("quality_scored"),
    )  # fmt: skip
    return (
        per_user.join(before, on="user_id", how="left")
        .with_columns(
            pl.lit(day.isoformat()).alias("period"),
            pl.coalesce("_first", pl.lit(day)).alias("first_seen"),
            pl.lit(day).alias("last_seen"),
            (pl.col("_last") >= day - timedelta(days=7))
            .fill_null(False)
            .alias("returned_within_7d"),
            pl.col("_last").is_not_null().alias("returned_within_30d"),
            pl.lit(day).alias("day"),
        )
        .select(list(USER_SCHEMA))
        .cast(USER_SCHEMA)
        .sort("user_id")
    )  # fmt: skip
