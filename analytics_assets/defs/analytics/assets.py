"""Analytics: per-conversation quality and satisfaction (reports build on it)."""

import time

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    MetadataValue,
    Output,
    TimeWindowPartitionMapping,
    asset,
)

from analytics_assets.analytics.reports import REPORT_SCHEMA, combine
from analytics_assets.analytics.reports import daily_report as build_daily_report
from analytics_assets.analytics.scores import conversation_analytics as score_conversations
from analytics_assets.analytics.users import HISTORY_DAYS
from analytics_assets.analytics.users import user_analytics as build_user_analytics
from analytics_assets.defs.ingestion.partitions import (
    daily_partitions,
    days_in,
    messages_of_conversations_started_that_day,
    monthly_partitions,
    weekly_partitions,
)
from analytics_assets.defs.metadata import frame_metadata
from analytics_assets.storage.placement import io_manager_key


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key=io_manager_key("conversation_analytics"),
    group_name="analytics",
    kinds={"polars", "parquet", "mongodb"},
    ins={
        "conversations": AssetIn(),
        "conversation_categories": AssetIn(),
        "conversation_messages": messages_of_conversations_started_that_day(),
    },
    description="Per conversation: duration, turns, latency p50/p95, tokens, resolution "
    "signals, and quality and satisfaction scores in [0, 1] with their components "
    "(docs/metrics.md).",
)
def conversation_analytics(
    context: AssetExecutionContext,
    conversations: pl.DataFrame,
    conversation_categories: pl.DataFrame,
    conversation_messages: pl.DataFrame,
) -> Output[pl.DataFrame]:
    started = time.perf_counter()
    analytics = score_conversations(conversations, conversation_messages, conversation_categories)
    seconds = time.perf_counter() - started
    means = analytics.select(
        pl.col("quality_score", "satisfaction_score").mean().round(4),
        pl.col(
            "repeated_question", "unanswered_last_turn", "abandoned_after_reply", "escalation",
            "complaint",
        ).mean().round(4),
    ).to_dicts()  # fmt: skip
    return Output(
        analytics,
        metadata={
            "score_seconds": round(seconds, 3),
            "means": MetadataValue.json(means[0] if means else {}),
            **frame_metadata(analytics, days=len(days_in(context.partition_time_window))),
        },
    )


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key=io_manager_key("daily_report"),
    group_name="analytics",
    kinds={"polars", "parquet", "mongodb"},
    description="The day at a glance: volumes, users, topic/intent/sentiment/language "
    "distributions, quality, satisfaction, latency, tokens, per-model breakdown, errors.",
)
def daily_report(
    context: AssetExecutionContext,
    conversation_analytics: pl.DataFrame,
    conversation_messages: pl.DataFrame,
    processing_errors: pl.DataFrame,
) -> Output[pl.DataFrame]:
    frames = [
        build_daily_report(
            day,
            conversation_analytics.filter(pl.col("day") == day),
            conversation_messages.filter(pl.col("day") == day),
            processing_errors.filter(pl.col("day") == day),
        )
        for day in days_in(context.partition_time_window)
    ]
    reports = pl.concat(frames)
    return Output(reports, metadata=_report_metadata(reports))


def _report_metadata(reports: pl.DataFrame) -> dict:
    last = reports.row(-1, named=True)
    topics = "\n".join(f"| {t['value']} | {t['count']} |" for t in last["topics"][:10])
    summary = (
        f"**{last['kind']} {last['period']}**: {last['conversations']} conversations, "
        f"{last['messages']} messages, {last['users']} users; quality "
        f"{(last['quality_mean'] or 0):.2f}, satisfaction {(last['satisfaction_mean'] or 0):.2f}; "
        f"{last['errors']} errors.\n\n| topic | conversations |\n|---|---|\n{topics}"
    )
    return {
        "summary": MetadataValue.md(summary),
        "conversations": int(reports["conversations"].sum()),
        "reports": reports.height,
    }


def _period_report(kind: str, partitions_def, period_of, description: str):
    """A report of a longer period, combined from its daily reports (never raw records)."""

    @asset(
        name=f"{kind}_report",
        partitions_def=partitions_def,
        io_manager_key=io_manager_key(f"{kind}_report"),
        group_name="analytics",
        kinds={"polars", "parquet", "mongodb"},
        ins={"daily_report": AssetIn(metadata={"allow_missing_partitions": True})},
        description=description,
    )
    def period_report(
        context: AssetExecutionContext, daily_report: pl.DataFrame
    ) -> Output[pl.DataFrame]:
        start = context.partition_time_window.start.date()
        report = combine(
            kind, period_of(context.partition_key, start), start, _daily_rows(daily_report)
        )
        return Output(report, metadata=_report_metadata(report))

    return period_report


weekly_report = _period_report(
    "weekly",
    weekly_partitions,
    lambda partition_key, start: partition_key,
    "The week (Monday to Sunday) combined from its daily reports.",
)
monthly_report = _period_report(
    "monthly",
    monthly_partitions,
    lambda partition_key, start: start.strftime("%Y-%m"),
    "The calendar month combined from its daily reports.",
)


def _daily_rows(daily_report: pl.DataFrame) -> pl.DataFrame:
    # No day of the period materialized yet: combine nothing into an empty-but-valid report.
    return daily_report if daily_report.width else pl.DataFrame(schema=REPORT_SCHEMA)


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key=io_manager_key("user_analytics"),
    group_name="analytics",
    kinds={"polars", "parquet", "mongodb"},
    ins={
        # The day and the 30 before it, to tell returning users from new ones (a lazy scan:
        # only the columns used are read).
        "conversation_analytics": AssetIn(
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=-HISTORY_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
            metadata={"allow_missing_partitions": True},
        ),
    },
    description="Per user and day: activity, topics, sentiment, satisfaction, models used, "
    "first and last seen, and whether they returned within 7 / 30 days.",
)
def user_analytics(
    context: AssetExecutionContext, conversation_analytics: pl.LazyFrame
) -> Output[pl.DataFrame]:
    window = conversation_analytics.select(
        "user_id", "day", "message_count", "topic", "model", "sentiment_end_score",
        "satisfaction_score", "quality_score",
    ).collect()  # fmt: skip
    users = pl.concat(
        [build_user_analytics(day, window) for day in days_in(context.partition_time_window)]
    )
    returning = users.filter(pl.col("returned_within_30d")).height
    return Output(
        users,
        metadata={
            "users": users.height,
            "returning_users": returning,
            "new_users": users.height - returning,
            **frame_metadata(users, days=len(days_in(context.partition_time_window))),
        },
    )
