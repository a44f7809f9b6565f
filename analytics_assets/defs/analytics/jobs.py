"""The report jobs: daily reports rebuilt on their own, and each week and month once closed."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    define_asset_job,
    schedule,
)

from analytics_assets import tables
from analytics_assets.defs.partitions import (
    daily_partitions,
    monthly_partitions,
    weekly_partitions,
)

DAILY_REPORT = AssetSelection.assets(tables.DAILY_REPORT)

daily_report_job = define_asset_job(
    "daily_report_job",
    selection=DAILY_REPORT,
    partitions_def=daily_partitions,
    description="Rebuild daily reports from the lake (after an erasure, or a fix).",
)
# A day's new and returning users and its report, again: what a change to an earlier day's
# users makes stale (defs/analytics/sensors.py).
users_and_report_job = define_asset_job(
    "users_and_report_job",
    selection=AssetSelection.assets(tables.USER_ANALYTICS, tables.DAILY_REPORT),
    partitions_def=daily_partitions,
    description="Rebuild a day's user analytics (new and returning users) and its report.",
)
# The return predictions of a day, again: the newest day's forecast reads the 90 days of
# user analytics before it, which an earlier day's rebuild changes.
predictions_job = define_asset_job(
    "user_return_predictions_job",
    selection=AssetSelection.assets(tables.USER_RETURN_PREDICTIONS),
    partitions_def=daily_partitions,
    description="Rebuild a day's user return predictions.",
)
# The period reports are the analytics assets on the weekly and monthly partitions.
weekly_report_job = define_asset_job(
    "weekly_report_job",
    selection=AssetSelection.assets(tables.WEEKLY_REPORT),
    partitions_def=weekly_partitions,
    description="Combine a week's daily reports.",
)
monthly_report_job = define_asset_job(
    "monthly_report_job",
    selection=AssetSelection.assets(tables.MONTHLY_REPORT),
    partitions_def=monthly_partitions,
    description="Combine a month's daily reports.",
)
# Every job that builds reports again: the domain's jobs, and what its sensor requests.
REPORT_REBUILD_JOBS = (
    daily_report_job,
    users_and_report_job,
    predictions_job,
    weekly_report_job,
    monthly_report_job,
)
# The job that rebuilds each report asset, for whoever must rebuild reports (erasure).
REPORT_JOBS = {
    tables.DAILY_REPORT: daily_report_job,
    tables.WEEKLY_REPORT: weekly_report_job,
    tables.MONTHLY_REPORT: monthly_report_job,
}


def _closed_period_schedule(job, partitions_def, cron: str) -> ScheduleDefinition:
    """Each week or month once it has closed. The partitions include the period in progress
    (for period-to-date reports), so the key is the period that ended at the tick's midnight,
    not the last partition."""

    @schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        description=f"Materializes {job.name}'s period once its last day is final: a day "
        "after it closed at midnight UTC.",
    )
    def closed_period(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
        tick = context.scheduled_execution_time.astimezone(UTC)
        # The tick is a day after the period closed: its last day's conversations that ran
        # past midnight are only final once the next day is built (the across-midnight
        # sensor, after the 02:00 ingestion), and a period built at the first morning kept
        # its last day short for good. The key is the period that closed the midnight before.
        closed = datetime.combine(tick.date() - timedelta(days=1), time(), tzinfo=UTC)
        key = partitions_def.get_partition_key_for_timestamp(closed.timestamp() - 1)
        first = partitions_def.get_first_partition_key()
        if first is None or key < first:
            # The period closed before the first partition (the week or month holding
            # ANALYTICS_PARTITIONS_START): there is no such partition, and asking for it
            # failed the tick.
            return SkipReason(f"{key} is before the first {job.name} partition ({first})")
        return RunRequest(run_key=f"{job.name}:{key}", partition_key=key)

    return closed_period


# Tuesday 04:00 and the 2nd at 05:00: a day after each period closed (`closed_period`).
weekly_report_schedule = _closed_period_schedule(weekly_report_job, weekly_partitions, "0 4 * * 2")
monthly_report_schedule = _closed_period_schedule(
    monthly_report_job, monthly_partitions, "0 5 2 * *"
)
