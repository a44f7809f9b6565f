"""Blocking key checks (a duplicate or missing key would poison every downstream count), and
the messages no conversation will count."""

from datetime import date, timedelta

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    asset_check,
)

from analytics_assets import tables
from analytics_assets.defs.check_evaluations import CheckEvents, evaluations_per_day
from analytics_assets.defs.partitions import daily_partitions, days_in
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.transforms.conversations import orphan_messages

# Checks count, and never name, conversations: their metadata is kept in Dagster's run
# storage, which no erasure reaches (docs/privacy.md). The ids are in the lake, where one does.


def _key_check(frame: pl.DataFrame, key: str):
    """Each day's verdict on its own rows: a key is unique within its day. Validation keeps
    one copy of a record per day on purpose (a run of a range gives each day what a run of
    that day gives it), so a key on two days is not a broken day. Judged over the whole run,
    a message NocoDB delivered again after midnight failed a range backfill, blocking every
    day's conversations, while the same days run one by one passed."""

    def result_of(partition_key: str) -> AssetCheckResult:
        day = frame.filter(pl.col("day") == date.fromisoformat(partition_key))
        missing = day.filter(pl.col(key).is_null()).height
        duplicates = day.height - day.select(pl.col(key).n_unique()).item()
        return AssetCheckResult(
            passed=missing == 0 and duplicates == 0,
            severity=AssetCheckSeverity.ERROR,
            metadata={"rows": day.height, "missing_keys": missing, "duplicate_keys": duplicates},
        )

    return result_of


@asset_check(asset=tables.CONVERSATION_MESSAGES, blocking=True, partitions_def=daily_partitions)
def message_ids_unique_and_present(
    context: AssetCheckExecutionContext, conversation_messages: pl.DataFrame
) -> CheckEvents:
    yield from evaluations_per_day(context, _key_check(conversation_messages, "message_id"))


@asset_check(asset=tables.CONVERSATIONS, blocking=True, partitions_def=daily_partitions)
def conversation_ids_unique_and_present(
    context: AssetCheckExecutionContext, conversations: pl.DataFrame
) -> CheckEvents:
    yield from evaluations_per_day(context, _key_check(conversations, "conversation_id"))


# How far apart two records of one conversation are looked for. A copy two days away was
# counted twice (each day with every message of the conversation) and passed: the check
# looked at the neighbouring days only.
COPIES_WITHIN_DAYS = 30


@asset_check(
    asset=tables.CONVERSATIONS,
    partitions_def=daily_partitions,
    description="Conversations whose id is also a conversation of another day within "
    f"{COPIES_WITHIN_DAYS} days (WARN, counted: `conversations` of those days holds their "
    "ids): NocoDB holds the conversation twice, with start times on two days, and each day "
    "counts it with every message it has. Keep one record at the source, then rebuild both "
    "days.",
)
def conversation_ids_on_one_day(
    context: AssetCheckExecutionContext, conversations: pl.DataFrame, lake: LakeResource
) -> CheckEvents:
    days = days_in(context.partition_time_window)
    around = timedelta(days=COPIES_WITHIN_DAYS)
    # The run's own days from the step's frame, the days around them from the lake (ids
    # only: a few kilobytes a day).
    window = (days[-1] - days[0] + 2 * around).days + 1
    others = [
        day
        for day in (days[0] - around + timedelta(days=n) for n in range(window))
        if day not in days
    ]
    # `read_days` reads those the lake holds.
    stored, _ = lake.lake().read_days(tables.CONVERSATIONS, others, ["day", "conversation_id"])
    ids = pl.concat(
        [
            conversations.select("day", "conversation_id"),
            *([stored.select("day", "conversation_id")] if stored is not None else []),
        ]
    ).unique()
    # Another day within the window of each day, not anywhere in the run: what a run of one
    # day sees, so a range run gives each day the same verdict.
    on_two_days = (
        ids.join(ids, on="conversation_id", suffix="_other")
        .filter(
            (pl.col("day") != pl.col("day_other"))
            & ((pl.col("day") - pl.col("day_other")).abs() <= around)
        )
        .select("day", "conversation_id")
        .unique()
    )

    def result_of(partition_key: str) -> AssetCheckResult:
        day = date.fromisoformat(partition_key)
        mine = on_two_days.filter(pl.col("day") == day)
        return AssetCheckResult(
            passed=mine.is_empty(),
            severity=AssetCheckSeverity.WARN,
            metadata={"conversations_on_two_days": mine.height},
        )

    yield from evaluations_per_day(context, result_of)


@asset_check(
    asset=tables.CONVERSATION_MESSAGES,
    partitions_def=daily_partitions,
    description="Messages whose conversation started neither on their day nor the day before "
    "(WARN, counted, and their conversations; the day's `conversation_messages` holds "
    "their ids): no conversation summary counts them. A conversation "
    "that arrives after its messages clears this when the messages' day is rebuilt (the "
    "change sensor rebuilds the day the conversation record lands on). Messages of a "
    "rejected conversation are counted apart: their reason is in processing_errors.",
)
def messages_belong_to_a_conversation(
    context: AssetCheckExecutionContext, conversation_messages: pl.DataFrame, lake: LakeResource
) -> CheckEvents:
    days = days_in(context.partition_time_window)
    # A check's inputs are its own partitions only; the day before comes from the lake.
    window = [days[0] - timedelta(days=1), *days]
    stored = lake.lake()
    no_rows = pl.DataFrame(schema={"day": pl.Date, "conversation_id": pl.String})
    headers, _ = stored.read_days(tables.CONVERSATION_HEADERS, window, ["day", "conversation_id"])
    errors, _ = stored.read_days(
        tables.PROCESSING_ERRORS, window, ["day", "table", "conversation_id"]
    )
    headers = headers if headers is not None else no_rows
    rejected = errors.filter(pl.col("table") == "conversations") if errors is not None else no_rows

    def result_of(partition_key: str) -> AssetCheckResult:
        day = date.fromisoformat(partition_key)
        started = pl.col("day").is_between(day - timedelta(days=1), day)
        orphans = orphan_messages(
            conversation_messages.filter(pl.col("day") == day),
            headers.filter(started),
            rejected.filter(started)["conversation_id"].drop_nulls(),
        )
        return AssetCheckResult(
            passed=orphans["unknown"].height == 0,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "orphan_messages": orphans["unknown"].height,
                "orphan_conversations": orphans["unknown"]["conversation_id"].n_unique(),
                "messages_of_rejected_conversations": orphans["rejected"].height,
            },
        )

    yield from evaluations_per_day(context, result_of)
