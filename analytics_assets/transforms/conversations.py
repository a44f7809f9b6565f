"""Conversation headers + their messages -> one summary row per conversation."""

from __future__ import annotations

import polars as pl

from analytics_assets.transforms.records import messages_within_reach, newest_copies
from analytics_assets.transforms.timestamps import TIMESTAMP_DTYPE

CONVERSATION_SCHEMA: dict[str, pl.DataType] = {
    "conversation_id": pl.String(),
    "user_id": pl.String(),
    "model": pl.String(),
    "channel": pl.String(),
    "started_at": TIMESTAMP_DTYPE,
    "ended_at": TIMESTAMP_DTYPE,
    "duration_s": pl.Float64(),
    "turns": pl.UInt32(),
    "message_count": pl.UInt32(),
    "user_messages": pl.UInt32(),
    "assistant_messages": pl.UInt32(),
    "system_messages": pl.UInt32(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "latency_ms_mean": pl.Float64(),
    "latency_ms_max": pl.Float64(),
    "rating": pl.Int8(),
    "feedback_up": pl.UInt32(),
    "feedback_down": pl.UInt32(),
    "day": pl.Date(),
}

_COUNT_COLUMNS = (
    "message_count",
    "user_messages",
    "assistant_messages",
    "system_messages",
    "feedback_up",
    "feedback_down",
)


def build_conversations(headers: pl.DataFrame, messages: pl.DataFrame) -> pl.DataFrame:
    """Summarizes each conversation header with the messages that belong to it.

    `messages` must cover every day the conversations run into (the start day and the next,
    see the asset's partition mapping); messages of other conversations, and those of a
    later day, are ignored (`messages_within_reach`).
    """
    role = pl.col("role")
    per_conversation = (
        newest_copies(messages_within_reach(messages, headers))
        .group_by("conversation_id")
        .agg(
            pl.col("created_at").max().alias("ended_at"),
            pl.len().cast(pl.UInt32).alias("message_count"),
            (role == "user").sum().cast(pl.UInt32).alias("user_messages"),
            (role == "assistant").sum().cast(pl.UInt32).alias("assistant_messages"),
            (role == "system").sum().cast(pl.UInt32).alias("system_messages"),
            pl.col("prompt_tokens").sum().alias("prompt_tokens"),
            pl.col("completion_tokens").sum().alias("completion_tokens"),
            pl.col("latency_ms").mean().alias("latency_ms_mean"),
            pl.col("latency_ms").max().alias("latency_ms_max"),
            (pl.col("feedback") == "up").sum().cast(pl.UInt32).alias("feedback_up"),
            (pl.col("feedback") == "down").sum().cast(pl.UInt32).alias("feedback_down"),
            # The header's model may be blank; the model that wrote most of the replies is
            # the next best. A client may tag user, system and tool messages with a model too:
            # those count only where no reply names one.
            pl.coalesce(
                pl.col("model").filter(role == "assistant").drop_nulls().mode().sort().first(),
                pl.col("model").drop_nulls().mode().sort().first(),
            ).alias("answering_model"),
        )
    )
    return (
        headers.join(per_conversation, on="conversation_id", how="left")
        .with_columns(
            pl.coalesce("model", "answering_model").alias("model"),
            # A message stamped before its conversation started (a client's clock) would
            # make the conversation end before it began: a negative duration.
            pl.max_horizontal("ended_at", "started_at").alias("ended_at"),
            *[pl.col(name).fill_null(0) for name in _COUNT_COLUMNS],
            pl.col("prompt_tokens").fill_null(0),
            pl.col("completion_tokens").fill_null(0),
        )
        .with_columns(
            ((pl.col("ended_at") - pl.col("started_at")).dt.total_microseconds() / 1e6).alias(
                "duration_s"
            ),
            pl.col("user_messages").alias("turns"),
            (pl.col("prompt_tokens") + pl.col("completion_tokens")).alias("total_tokens"),
        )
        .select(list(CONVERSATION_SCHEMA))
        .cast(CONVERSATION_SCHEMA)
        .sort("started_at", "conversation_id")
    )


def orphan_messages(
    messages: pl.DataFrame, headers: pl.DataFrame, rejected_conversation_ids: pl.Series
) -> dict[str, pl.DataFrame]:
    """Messages of one day no conversation summary will count: their conversation started
    neither that day nor the day before (`headers` must hold both days; the rule
    `build_conversations` reads messages by). Split into those whose conversation record was
    rejected (its reason is in processing_errors) and those whose conversation is unknown."""
    unmatched = messages.join(headers.select("conversation_id"), on="conversation_id", how="anti")
    rejected = unmatched["conversation_id"].is_in(rejected_conversation_ids.implode())
    return {"unknown": unmatched.filter(~rejected), "rejected": unmatched.filter(rejected)}
