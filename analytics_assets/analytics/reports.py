"""Daily, weekly and monthly reports. A report is one row of additive parts (counts, sums,
distributions, user ids), so a week or a month is exactly the combination of its days."""

from __future__ import annotations

from datetime import date

import polars as pl

DISTRIBUTIONS = {"topics": "topic", "intents": "intent", "sentiments": "sentiment",
                 "languages": "language"}  # fmt: skip
COUNT_STRUCT = pl.List(pl.Struct({"value": pl.String(), "count": pl.UInt32()}))
MODEL_STRUCT = pl.List(
    pl.Struct(
        {
            "model": pl.String(),
            "conversations": pl.UInt32(),
            "quality_sum": pl.Float64(),
            "quality_count": pl.UInt32(),
            "satisfaction_sum": pl.Float64(),
            "satisfaction_count": pl.UInt32(),
            "total_tokens": pl.Int64(),
        }
    )
)
REPORT_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(),
    "period": pl.String(),
    "conversations": pl.UInt32(),
    "messages": pl.UInt32(),
    "users": pl.UInt32(),
    "user_ids": pl.List(pl.String()),
    **{name: COUNT_STRUCT for name in DISTRIBUTIONS},
    "quality_sum": pl.Float64(),
    "quality_count": pl.UInt32(),
    "quality_mean": pl.Float64(),
    "satisfaction_sum": pl.Float64(),
    "satisfaction_count": pl.UInt32(),
    "satisfaction_mean": pl.Float64(),
    "latency_p50_sum": pl.Float64(),
    "latency_count": pl.UInt32(),
    "latency_p50_mean": pl.Float64(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "per_model": MODEL_STRUCT,
    "errors": pl.UInt32(),
    "day": pl.Date(),
}


def _counts(frame: pl.DataFrame, column: str) -> list[dict]:
    counts = frame.group_by(column).len().sort(["len", column], descending=[True, False])
    return [
        {"value": value, "count": count} for value, count in counts.iter_rows() if value is not None
    ]


def _finish(row: dict) -> pl.DataFrame:
    def mean(total: str, count: str) -> float | None:
        return row[total] / row[count] if row[count] else None

    row["quality_mean"] = mean("quality_sum", "quality_count")
    row["satisfaction_mean"] = mean("satisfaction_sum", "satisfaction_count")
    row["latency_p50_mean"] = mean("latency_p50_sum", "latency_count")
    row["users"] = len(row["user_ids"])
    return pl.DataFrame([row], schema=REPORT_SCHEMA)


def daily_report(
    day: date, analytics: pl.DataFrame, messages: pl.DataFrame, errors: pl.DataFrame
) -> pl.DataFrame:
    """The day's report from its conversations' analytics, its messages and its errors."""
    per_model = (
        analytics.group_by("model")
        .agg(
            pl.len().cast(pl.UInt32).alias("conversations"),
            pl.col("quality_score").sum().alias("quality_sum"),
            pl.col("quality_score").count().cast(pl.UInt32).alias("quality_count"),
            pl.col("satisfaction_score").sum().alias("satisfaction_sum"),
            pl.col("satisfaction_score").count().cast(pl.UInt32).alias("satisfaction_count"),
            pl.col("total_tokens").sum().alias("total_tokens"),
        )
        .sort("model")
    )
    row = {
        "kind": "daily",
        "period": day.isoformat(),
        "day": day,
        "conversations": analytics.height,
        "messages": messages.height,
        "user_ids": sorted(analytics["user_id"].drop_nulls().unique().to_list()),
        **{name: _counts(analytics, column) for name, column in DISTRIBUTIONS.items()},
        "quality_sum": float(analytics["quality_score"].sum() or 0.0),
        "quality_count": analytics["quality_score"].count(),
        "satisfaction_sum": float(analytics["satisfaction_score"].sum() or 0.0),
        "satisfaction_count": analytics["satisfaction_score"].count(),
        "latency_p50_sum": float(analytics["latency_p50_ms"].sum() or 0.0),
        "latency_count": analytics["latency_p50_ms"].count(),
        "prompt_tokens": int(analytics["prompt_tokens"].sum() or 0),
        "completion_tokens": int(analytics["completion_tokens"].sum() or 0),
        "total_tokens": int(analytics["total_tokens"].sum() or 0),
        "per_model": per_model.to_dicts(),
        "errors": errors.height,
    }
    return _finish(row)


def combine(kind: str, period: str, start: date, days: pl.DataFrame) -> pl.DataFrame:
    """A week or a month from its daily reports, never from raw records."""

    def merged_counts(column: str) -> list[dict]:
        exploded = days.select(pl.col(column).explode()).unnest(column).drop_nulls("value")
        totals = exploded.group_by("value").agg(pl.col("count").sum())
        return totals.sort(["count", "value"], descending=[True, False]).to_dicts()

    models = days.select(pl.col("per_model").explode()).unnest("per_model").drop_nulls("model")
    per_model = (
        models.group_by("model").agg(pl.all().sum()).sort("model").to_dicts()
        if models.height
        else []
    )
    sums = days.select(
        pl.col(
            "conversations", "messages", "quality_sum", "quality_count", "satisfaction_sum",
            "satisfaction_count", "latency_p50_sum", "latency_count", "prompt_tokens",
            "completion_tokens", "total_tokens", "errors",
        ).sum()
    ).to_dicts()[0]  # fmt: skip
    row = {
        "kind": kind,
        "period": period,
        "day": start,
        **sums,
        "user_ids": sorted(set(days.select(pl.col("user_ids").explode()).to_series().drop_nulls())),
        **{name: merged_counts(name) for name in DISTRIBUTIONS},
        "per_model": per_model,
    }
    return _finish(row)
