"""The runs a sensor turns into notifications (alerts, webhook events): finished runs in the
order they finished, after a cursor that is the update time of the last one handled. Runs
are read, not the event log by id, so this works on run-sharded SQLite storage too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dagster import DagsterInstance, DagsterRunStatus, RunRecord, RunsFilter


def finished_runs_after(
    instance: DagsterInstance, cursor: str | None, limit: int
) -> Sequence[RunRecord]:
    """Up to `limit` runs that succeeded or failed after `cursor` (None: from the first),
    oldest first."""
    return instance.get_run_records(
        filters=RunsFilter(
            statuses=[DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE],
            updated_after=datetime.fromisoformat(cursor) if cursor else None,
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=limit,
    )


def cursor_after(record: RunRecord) -> str:
    """The cursor that resumes after `record`."""
    return record.update_timestamp.isoformat()
