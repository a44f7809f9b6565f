"""What the instance says is built, and what is being built: shared by the sensors that
build a day again after what it reads changed (`ingestion/across_midnight.py`,
`analytics/sensors.py`)."""

from __future__ import annotations

from datetime import date

from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus, RunsFilter

from analytics_assets.defs.partitions import days_of_run

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


def days_being_built(instance, job_name: str | None = None) -> set[date]:
    """The days runs not finished yet (of `job_name`, else of any job) may write: each one's
    partition, or its range."""
    days: set[date] = set()
    runs = instance.get_runs(filters=RunsFilter(job_name=job_name, statuses=_IN_PROGRESS))
    for run in runs:
        try:
            days.update(days_of_run(None, run.tags))
        except ValueError:
            continue  # not a daily partition key (a week's or a month's run)
    return days
