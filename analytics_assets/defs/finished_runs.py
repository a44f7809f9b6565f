"""The runs a sensor turns into notifications (alerts, webhook events): finished runs in the
order they finished, after a cursor that is the update time of the last one handled. Runs
are read, not the event log by id, so this works on run-sharded SQLite storage too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from dagster import DagsterInstance, DagsterRunStatus, RunRecord, RunsFilter

# What a notification is about: a run that ended, either way.
FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]


def finished_runs_after(
    instance: DagsterInstance, cursor: str | None, limit: int
) -> Sequence[RunRecord]:
    """Up to `limit` runs that succeeded or failed after `cursor` (None: from the first),
    oldest first."""
    return instance.get_run_records(
        filters=RunsFilter(
            statuses=FINISHED,
            updated_after=datetime.fromisoformat(cursor) if cursor else None,
        ),
        order_by="update_timestamp",
        ascending=True,
        limit=limit,
    )


# A run's update time is the time of its last event, stamped in the run's own process, not
# when the storage wrote it: a run that failed a moment before another succeeded can be
# stored after it, behind a cursor already past it, and was never alerted. Each tick reads
# this far behind its cursor again (`late_runs`); what it handled there, it skips.
LATE_RUNS_S = 120


def late_runs(instance: DagsterInstance, cursor: str | None) -> Sequence[RunRecord]:
    """The runs that succeeded or failed in the `LATE_RUNS_S` up to `cursor`, oldest first:
    those stored late included. Some were handled already: the caller skips them."""
    if not cursor:
        return []
    at = datetime.fromisoformat(cursor)
    return instance.get_run_records(
        filters=RunsFilter(
            statuses=FINISHED,
            updated_after=at - timedelta(seconds=LATE_RUNS_S),
            updated_before=at,
        ),
        order_by="update_timestamp",
        ascending=True,
    )


def cursor_after(record: RunRecord) -> str:
    """The cursor that resumes after `record`."""
    return record.update_timestamp.isoformat()
