"""The webhook sensor: turns finished runs into events, enqueues them for their subscribers
and sends what is due (first attempts and retries alike) on every tick.

Events, read from each finished run's event log:
- `report.ready`: a daily, weekly or monthly report materialized (one per partition);
- `check.failed`: an asset check failed (one per asset and check of a run, its days listed);
- `erasure.done`: `erase_user_job` succeeded;
- `sync.completed`: `ingestion_job` succeeded.

The cursor is the update time of the last finished run handled, as in the alert sensor (runs
are read, not the event log by id, so it works on run-sharded SQLite storage too). It moves
past a run once its events are enqueued; enqueueing is idempotent (an event's id is derived
from the run), so a tick that dies in between enqueues nothing twice. Delivery failures
never fail the tick: they are retried on the backoff by later ticks.
"""

from __future__ import annotations

import time

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from analytics_assets import tables
from analytics_assets.defs.finished_runs import cursor_after, finished_runs_after, late_runs
from analytics_assets.defs.ingestion.jobs import INGESTION_JOB
from analytics_assets.defs.metadata import numeric_metadata
from analytics_assets.defs.partitions import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from analytics_assets.defs.privacy.jobs import erase_user_job
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.webhooks import delivery, subscriptions
from analytics_assets.webhooks.events import (
    CHECK_FAILED,
    ERASURE_DONE,
    REPORT_READY,
    SYNC_COMPLETED,
    Event,
    numbers_only,
)

REPORT_KINDS = {
    tables.DAILY_REPORT: "daily",
    tables.WEEKLY_REPORT: "weekly",
    tables.MONTHLY_REPORT: "monthly",
}
# A report's headline counts; its markdown summary and chart are not for a payload.
REPORT_NUMBERS = ("conversations", "messages", "users", "new_users", "errors",
                  "quality_mean", "satisfaction_mean", "days")  # fmt: skip
RUNS_PER_TICK = 50


def _numbers(metadata) -> dict[str, int | float]:
    """A metadata's counts and measures (no bools, texts, tables or charts)."""
    return numbers_only(numeric_metadata(metadata))


def _run_data(run) -> dict:
    tags = run.tags
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "partition": tags.get(PARTITION_TAG),
        "first_partition": tags.get(RANGE_START_TAG),
        "last_partition": tags.get(RANGE_END_TAG),
    }


def events_for_run(instance, run, finished_at: float) -> list[Event]:
    """The events a finished run makes: its reports, failed checks, and the erasure or
    sync it was."""
    erasure = run.job_name == erase_user_job.name
    of_type = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}
    # The erasure's counts are its op's output metadata; other runs' outputs are not read.
    logs = instance.all_logs(
        run.run_id, of_type=of_type | {DagsterEventType.STEP_OUTPUT} if erasure else of_type
    )
    events: list[Event] = []
    failed_checks: dict[tuple[str, str], list] = {}
    materialized = 0
    step_numbers: dict[str, int | float] = {}
    for entry in logs:
        dagster_event = entry.dagster_event
        data = dagster_event.event_specific_data
        if dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialized += 1
            materialization = data.materialization
            asset = materialization.asset_key.to_user_string()
            if asset in REPORT_KINDS:
                events.append(_report_ready(run, asset, materialization, finished_at))
        elif dagster_event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            if not data.passed:
                key = (data.asset_key.to_user_string(), data.check_name)
                failed_checks.setdefault(key, []).append(data)
        elif erasure:
            step_numbers.update(_numbers(data.metadata))
    for (asset, check), evaluations in failed_checks.items():
        events.append(_check_failed(run, asset, check, evaluations, finished_at))
    if run.status == DagsterRunStatus.SUCCESS and erasure:
        data = {"run_id": run.run_id, "job": run.job_name, "numbers": step_numbers}
        events.append(Event(ERASURE_DONE, (run.run_id,), finished_at, data))
    if run.status == DagsterRunStatus.SUCCESS and run.job_name == INGESTION_JOB:
        data = {**_run_data(run), "numbers": {"materializations": materialized}}
        events.append(Event(SYNC_COMPLETED, (run.run_id,), finished_at, data))
    return events


def _report_ready(run, asset: str, materialization, finished_at: float) -> Event:
    numbers = _numbers(materialization.metadata)
    partition = materialization.partition
    data = {
        "asset": asset,
        "kind": REPORT_KINDS[asset],
        "partition": partition,
        "run_id": run.run_id,
        "numbers": {name: numbers[name] for name in REPORT_NUMBERS if name in numbers},
    }
    return Event(REPORT_READY, (run.run_id, asset, partition or ""), finished_at, data)


def _check_failed(run, asset: str, check: str, evaluations: list, finished_at: float) -> Event:
    first = evaluations[0]
    data = {
        "asset": asset,
        "check": check,
        "severity": first.severity.value,
        "partitions": sorted({e.partition for e in evaluations if e.partition}),
        "run_id": run.run_id,
        "job": run.job_name,
        "numbers": _numbers(first.metadata),
    }
    return Event(CHECK_FAILED, (run.run_id, asset, check), finished_at, data)


def _enqueue_events_of(instance, db, record) -> int:
    finished_at = record.update_timestamp.timestamp()
    return sum(
        delivery.enqueue(db, event, now=time.time())
        for event in events_for_run(instance, record.dagster_run, finished_at)
    )


@sensor(
    name="webhook_sensor",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Turns finished runs into webhook events (report.ready, check.failed, "
    "erasure.done, sync.completed) for their subscribers and sends what is due, retries too.",
)
def webhook_sensor(context: SensorEvaluationContext, mongo: MongoResource):
    db = mongo.db()
    # Runs stored after the cursor had passed them (`late_runs`) are read again: an event
    # enqueued before adds nothing (`enqueue` is keyed by the event).
    late = late_runs(context.instance, context.cursor)
    records = finished_runs_after(context.instance, context.cursor, limit=RUNS_PER_TICK)
    enqueued = 0
    if (late or records) and not subscriptions.any_active(db):
        # Nobody to tell: the runs' event logs are not read, and nobody subscribing later
        # gets them (a subscription gets what finishes after it was created).
        if records:
            context.update_cursor(cursor_after(records[-1]))
        late, records = [], []
    if late or records:
        # The delivery log's indexes, made here by the pipeline's database user (the API's
        # may write subscriptions only); each call is idempotent.
        subscriptions.ensure_indexes(db)
    for record in late:
        enqueued += _enqueue_events_of(context.instance, db, record)
    for record in records:
        enqueued += _enqueue_events_of(context.instance, db, record)
        context.update_cursor(cursor_after(record))
    outcome = delivery.deliver_pending(db, time.time())
    summary = (
        f"{enqueued} enqueued; {outcome.delivered} delivered, {outcome.retrying} to retry, "
        f"{outcome.dead} dead-lettered, {outcome.cancelled} cancelled"
    )
    context.log.info(f"webhooks: {summary}")
    return SkipReason(summary)
