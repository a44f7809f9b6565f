"""What the instance says is built, and what is being built: shared by the sensors that
build a day again after what it reads changed (`ingestion/across_midnight.py`,
`analytics/sensors.py`)."""

from __future__ import annotations

from datetime import date, timedelta

from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus, RunsFilter

from analytics_assets.defs.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG

_IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def materialization(
    instance, key: AssetKey, partition: str, *, before: int | None = None, after: int | None = None
):
    """The partition's newest materialization record (before the storage id `before`), or
    with `after`, its first one after that storage id; None where there is none."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=key,
            asset_partitions=[partition],
            before_storage_id=before,
            after_storage_id=after,
        ),
        limit=1,
        ascending=after is not None,
    ).records
    return records[0] if records else None


def latest_storage_id(instance, key: AssetKey, partition: str) -> int | None:
    """The event log's position of the partition's newest materialization (None: never
    built). Positions grow with time, so two of them say which was built after the other."""
    record = materialization(instance, key, partition)
    return record.storage_id if record else None


def days_being_built(instance) -> set[date]:
    """The days runs not finished yet may write: each one's partition, or its range."""
    days: set[date] = set()
    for run in instance.get_runs(filters=RunsFilter(statuses=_IN_PROGRESS)):
        try:
            if PARTITION_TAG in run.tags:
                days.add(date.fromisoformat(run.tags[PARTITION_TAG]))
            elif RANGE_START_TAG in run.tags and RANGE_END_TAG in run.tags:
                first = date.fromisoformat(run.tags[RANGE_START_TAG])
                last = date.fromisoformat(run.tags[RANGE_END_TAG])
                days.update(first + timedelta(days=n) for n in range((last - first).days + 1))
        except ValueError:
            continue  # not a daily partition key (a week's or a month's run)
    return days
