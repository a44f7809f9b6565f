"""Each day's own materialization metadata, also when one run materializes many days.

A single-run backfill is one step that writes every day of its range, and Dagster records
one materialization per day. Metadata returned with the step's `MaterializeResult` goes to
every one of them alike; `add_asset_metadata(..., partition_key=day)` goes to that day's
materialization only, over the shared metadata (Dagster merges the two into the one event
per partition, so no day gets a second materialization). The assets therefore return
run-level figures (timings, throughput), named `run/...`, and give every day its own
numbers here, so that the asset page plots them day by day.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

import polars as pl
from dagster import AssetExecutionContext, MetadataValue

from analytics_assets.analytics.checks import error_rate_verdict
from analytics_assets.defs.metadata import frame_metadata
from analytics_assets.transforms.records import (
    carried_rows_digest,
    is_kept_without_values,
    is_superseded,
    reason_without_values,
)

DayMetadata = Callable[[date, pl.DataFrame], Mapping[str, Any]]


def run_metadata(context: AssetExecutionContext, **figures: Any) -> dict[str, Any]:
    """Figures of the whole run (every day of it shows the same value), named `run/<name>` so
    that no plot passes them off as a day's, plus how many days the run covered."""
    return {"run/days": len(context.partition_keys), **{f"run/{k}": v for k, v in figures.items()}}


def rows_by_day(frame: pl.DataFrame) -> dict[date, pl.DataFrame]:
    if not frame.height:
        return {}
    return {
        key[0]: rows for key, rows in frame.partition_by("day", as_dict=True).items()
    }  # fmt: skip


def add_day_metadata(
    context: AssetExecutionContext,
    frame: pl.DataFrame,
    metadata_of_day: DayMetadata,
    *,
    asset_key: str | None = None,
) -> None:
    """Gives each partition of the run the metadata of its own rows (those whose `day` is
    the partition's); a day without rows is described by an empty frame."""
    by_day = rows_by_day(frame)
    for key in context.partition_keys:
        day = date.fromisoformat(key)
        context.add_asset_metadata(
            dict(metadata_of_day(day, by_day.get(day, frame.clear()))),
            asset_key=asset_key,
            partition_key=key,
        )


# The metadata entry, per next-day input (`next_day_digest/conversation_messages`), holding
# what a day's build read of the next day (`carried_rows_digest`): the across-midnight sensor
# builds the day again only where that changed.
NEXT_DAY_DIGEST = "next_day_digest"


def add_next_day_digests(
    context: AssetExecutionContext,
    conversations: pl.DataFrame,
    read_of_the_next_day: Mapping[str, pl.DataFrame | pl.LazyFrame],
) -> None:
    """Gives each partition day the digest of what it read of the next day in each input
    (input name -> the input as loaded, both days), for its conversations
    (`conversations`: conversation_id, day)."""
    if "day" not in conversations.columns or any(
        "day" not in rows.collect_schema().names() for rows in read_of_the_next_day.values()
    ):
        return  # frames built by hand: no day to tell the next one by
    # One pass over each input for the whole run (a 60-day range scans the lake once), then
    # each day from the few rows carried over midnight.
    next_days = conversations.lazy().select("conversation_id", pl.col("day").dt.offset_by("1d"))
    carried = {
        name: rows.lazy().join(next_days.unique(), on=["conversation_id", "day"], how="semi")
        for name, rows in read_of_the_next_day.items()
    }
    carried = {name: rows.collect() for name, rows in carried.items()}
    for key in context.partition_keys:
        day = date.fromisoformat(key)
        context.add_asset_metadata(
            {
                f"{NEXT_DAY_DIGEST}/{name}": carried_rows_digest(rows, conversations, day)
                for name, rows in carried.items()
            },
            partition_key=key,
        )


# Charts are rendered (matplotlib, ~0.2 s each) for the last days of a run only: a 60-day
# backfill drew 60 report charts and 60 calibration charts, 17 s of a 156 s run, for days
# nobody opens. Each day keeps its plottable numbers and its Vega-Lite spec.
CHARTED_DAYS = 7


def charted(partition_keys: list[str], key: str) -> bool:
    """Whether `key`'s materialization gets a rendered chart: one of the run's last
    `CHARTED_DAYS` days (every day of a shorter run)."""
    return key in sorted(partition_keys)[-CHARTED_DAYS:]


def _mean(rows: pl.DataFrame, column: str) -> dict[str, float]:
    # A day without a score has no mean: nothing to plot, rather than a NaN.
    value = rows[column].mean() if rows.height else None
    return {} if value is None else {column.removesuffix("_score") + "_mean": round(value, 4)}


def messages_metadata(
    rejected_by_day: Mapping[date, int],
    copies_by_day: Mapping[date, int],
    kept_by_day: Mapping[date, int],
) -> DayMetadata:
    """conversation_messages: the day's messages, its rejected message records and their
    share of the day's message records, older copies of a kept message left out of the
    share (`copies_by_day`), as the error-rate check leaves them out; and the messages kept
    with a wrong value left empty (`kept_by_day`, counted among the messages)."""

    def of_day(day: date, messages: pl.DataFrame) -> dict[str, Any]:
        rejected = rejected_by_day.get(day, 0)
        lost = rejected - copies_by_day.get(day, 0)
        return {
            **frame_metadata(messages),
            "messages": messages.height,
            "rejected": rejected,
            "kept_without_values": kept_by_day.get(day, 0),
            "error_rate": error_rate_verdict(lost, messages.height).metadata["error_rate"],
            "messages_by_role": MetadataValue.json(
                dict(messages.group_by("role").len().sort("role").iter_rows())
            ),
        }

    return of_day


def errors_metadata(accepted_by_day: Mapping[date, int]) -> DayMetadata:
    """processing_errors: the day's rejected records (messages and conversations) and their
    share of all its records, as the error-rate check computes it: older copies of a record
    whose newest copy was kept are shown apart, not counted (they read 5 % where the check
    and the report said 0), and so are records kept with a wrong value left empty."""

    def of_day(day: date, errors: pl.DataFrame) -> dict[str, Any]:
        copies = errors.filter(is_superseded(pl.col("reason"))).height
        kept = errors.filter(is_kept_without_values(pl.col("reason"))).height
        lost = errors.height - copies - kept
        return {
            **frame_metadata(
                errors.drop("record", strict=False).with_columns(
                    reason_without_values(pl.col("reason"))
                )
            ),
            "errors": errors.height,
            "superseded_copies": copies,
            "kept_without_values": kept,
            "error_rate": error_rate_verdict(lost, accepted_by_day.get(day, 0)).metadata[
                "error_rate"
            ],
        }

    return of_day


def conversations_metadata(day: date, conversations: pl.DataFrame) -> dict[str, Any]:
    """conversations: the day's conversations and users (its messages are counted where
    they are stored: conversation_messages and the daily report)."""
    return {
        **frame_metadata(conversations),
        "conversations": conversations.height,
        "users": conversations["user_id"].n_unique() if conversations.height else 0,
        "conversations_without_messages": conversations.filter(pl.col("message_count") == 0).height,
        "conversations_by_model": MetadataValue.json(
            dict(conversations.group_by("model").len().sort("model").iter_rows())
        ),
    }


ANALYTICS_RATES = (
    "repeated_question", "unanswered_last_turn", "abandoned_after_reply", "escalation",
    "complaint",
)  # fmt: skip


def analytics_metadata(day: date, analytics: pl.DataFrame) -> dict[str, Any]:
    """conversation_analytics: the day's conversations, their mean quality and satisfaction,
    and the share of them with each resolution signal."""
    rates = (
        analytics.select(pl.col(ANALYTICS_RATES).mean().round(4)).row(0, named=True)
        if analytics.height
        else {}
    )
    return {
        **frame_metadata(analytics),
        "conversations": analytics.height,
        **_mean(analytics, "quality_score"),
        **_mean(analytics, "satisfaction_score"),
        **{f"{name}_rate": value for name, value in rates.items() if value is not None},
    }


def users_metadata(day: date, users: pl.DataFrame) -> dict[str, Any]:
    """user_analytics: the day's users, returning and new."""
    returning = users.filter(pl.col("returned_within_30d")).height
    return {
        **frame_metadata(users),
        "users": users.height,
        "returning_users": returning,
        "new_users": users.height - returning,
    }
