"""Analytics: per-conversation quality and satisfaction (reports build on it)."""

import time

import polars as pl
from dagster import AssetExecutionContext, AssetIn, BackfillPolicy, MetadataValue, Output, asset

from analytics_assets.analytics.scores import conversation_analytics as score_conversations
from analytics_assets.defs.ingestion.partitions import (
    daily_partitions,
    days_in,
    messages_of_conversations_started_that_day,
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
