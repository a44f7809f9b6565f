"""The partitions every domain shares: UTC days of each record's event time, and the ISO
weeks and calendar months the period reports are built for."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta

from dagster import (
    AssetIn,
    DailyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    TimeWindow,
    TimeWindowPartitionMapping,
    WeeklyPartitionsDefinition,
)

from analytics_assets import tables
from analytics_assets.settings import get_settings

# The first day a deployment keeps (ANALYTICS_PARTITIONS_START). Read at import: Dagster
# needs it to list partitions.
PARTITIONS_START = get_settings().partitions_start
FIRST_DAY = date.fromisoformat(str(PARTITIONS_START)[:10])

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")
# ISO weeks (Monday to Sunday) and calendar months, read from the daily partitions. The
# period in progress is a partition too (end_offset=1), so a week- or month-to-date report
# can be built on demand; the schedules build each period once it has closed. The first
# week and month are those holding the first day: started on the first day, they began at
# the next Monday and the next 1st, and the days before were in no week or month (Jan 1-4
# for the default start, a Thursday).
FIRST_WEEK = FIRST_DAY - timedelta(days=FIRST_DAY.weekday())
FIRST_MONTH = FIRST_DAY.replace(day=1)
weekly_partitions = WeeklyPartitionsDefinition(
    start_date=FIRST_WEEK.isoformat(), day_offset=1, timezone="UTC", end_offset=1
)
monthly_partitions = MonthlyPartitionsDefinition(
    start_date=FIRST_MONTH.isoformat(), timezone="UTC", end_offset=1
)


def days_in(window: TimeWindow) -> list[date]:
    """The days a run covers: one for a partition, several for a single-run backfill."""
    first = window.start.date()
    count = (window.end.date() - first).days
    return [first + timedelta(days=offset) for offset in range(count)]


def messages_of_conversations_started_that_day(
    asset: str = tables.CONVERSATION_MESSAGES,
) -> AssetIn:
    """A per-message asset (`conversation_messages`, `message_signals`) as a
    per-conversation asset of day D needs it.

    A conversation that starts late in the day continues after midnight: read its start day
    and the next. The next day may not exist yet; it is read when it does.
    """
    return AssetIn(
        asset,
        partition_mapping=TimeWindowPartitionMapping(
            start_offset=0, end_offset=1, allow_nonexistent_upstream_partitions=True
        ),
        metadata={"allow_missing_partitions": True},
    )


# Dagster's documented run tags for a run of one partition, and for a run over a range of
# partitions (a single-run backfill); the constants behind them live in a private module.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Our own run tag: which sensor requested a run (the sync sensors, the across-midnight one).
TRIGGER_TAG = "analytics/trigger"


def range_tags(first: date | str, last: date | str) -> dict[str, str]:
    """Run tags that make one run cover the days first..last. A range that starts before
    the deployment's first day fails here, naming the setting, instead of deep inside
    Dagster (`CheckError: Partition key range start … is before the partitions definition
    start time`)."""
    if str(first) < FIRST_DAY.isoformat():
        raise ValueError(
            f"The range starts on {first}, before this deployment's first day "
            f"{FIRST_DAY}: set ANALYTICS_PARTITIONS_START to {first} or "
            "earlier (it is read when the code location loads), then reload."
        )
    return {RANGE_START_TAG: str(first), RANGE_END_TAG: str(last)}


def consecutive_runs(days: Iterable[date], most: int) -> list[tuple[date, date]]:
    """`days` as runs of consecutive days (first, last), each at most `most` days long,
    oldest first."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and day - runs[-1][1] == timedelta(days=1) and (day - runs[-1][0]).days < most:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def days_of_run(partition_key: str | None, tags: Mapping[str, str]) -> list[date]:
    """The days a run (or a run request) covers: its partition (the argument, else its
    `dagster/partition` tag), or each day of its range; none where it has neither. A
    partition that is not a day (a week's, a month's) raises ValueError."""
    key = partition_key or tags.get(PARTITION_TAG)
    if key:
        return [date.fromisoformat(key)]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        first = date.fromisoformat(tags[RANGE_START_TAG])
        last = date.fromisoformat(tags[RANGE_END_TAG])
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return []


def requested_days(partition_key: str | None, tags: Mapping[str, str]) -> str | None:
    """What a run request or a run covers, as a person reads it: its day, or `first..last`
    for a range run."""
    if partition_key:
        return partition_key
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return f"{tags[RANGE_START_TAG]}..{tags[RANGE_END_TAG]}"
    return None
