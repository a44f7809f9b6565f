"""A sensor that sends failed runs and failed asset checks to the configured sinks, once each.

The cursor is the update time of the last finished run handled; it only moves past a run
once every configured sink took its alerts, so a failed delivery is retried on the next
tick and never crashes the sensor. Without a cursor (the first tick) the finished runs
already in the instance are read too, 50 a tick.
"""

from __future__ import annotations

from collections.abc import Callable

from dagster import (
    DagsterEventType,
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from analytics_assets.alerts.core import Alert, DeliveryError, run_link, severity_passes
from analytics_assets.defs.finished_runs import cursor_after, finished_runs_after
from analytics_assets.defs.metadata import numeric_metadata
from analytics_assets.defs.partitions import PARTITION_TAG

Sink = Callable[[Alert], None]
# The daily report's freshness check (defs/analytics/checks.py): a failure is a stale report.
FRESHNESS_CHECK = "freshness_check"


def _alerts_for_run(instance, run, min_severity: str, ui_url: str | None) -> list[Alert]:
    """The run's failure, if it failed, and its failed checks at or over `min_severity`."""
    alerts = []
    if run.status == DagsterRunStatus.FAILURE:
        alerts.append(
            Alert(
                kind="run_failed",
                title=f"Run failed: {run.job_name}",
                job=run.job_name,
                partition=run.tags.get(PARTITION_TAG),
                run_id=run.run_id,
                link=run_link(ui_url, run.run_id),
            )
        )
    # A run over many days records a daily check once per day: its failed days make one
    # alert, not one each.
    failed_days: dict[tuple, list] = {}
    for entry in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        # A failed freshness check is a stale report: always sent, whatever its severity.
        stale = evaluation.check_name == FRESHNESS_CHECK
        if evaluation.passed or not (
            stale or severity_passes(evaluation.severity.value, min_severity)
        ):
            continue
        failed_days.setdefault((evaluation.asset_key, evaluation.check_name), []).append(evaluation)
    for evaluations in failed_days.values():
        evaluation = evaluations[0]
        stale = evaluation.check_name == FRESHNESS_CHECK
        asset = evaluation.asset_key.to_user_string()
        what = "Report is stale" if stale else "Asset check failed"
        alerts.append(
            Alert(
                kind="stale_report" if stale else "asset_check_failed",
                title=f"{what}: {asset} / {evaluation.check_name}",
                asset=asset,
                partition=_days_named(evaluations) or run.tags.get(PARTITION_TAG),
                check=evaluation.check_name,
                severity=evaluation.severity.value,
                run_id=run.run_id,
                job=run.job_name,
                numbers=numeric_metadata(evaluation.metadata),
                link=run_link(ui_url, run.run_id),
            )
        )

    return alerts


def _days_named(evaluations: list) -> str | None:
    days = sorted(e.partition for e in evaluations if e.partition)
    if len(days) <= 3:
        return ", ".join(days) or None
    return f"{days[0]} .. {days[-1]} ({len(days)} days)"


def build_check_alert_sensor(
    sinks: list[Sink], *, min_severity: str = "ERROR", ui_url: str | None = None
):
    @sensor(
        name="asset_check_alert_sensor",
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING if sinks else DefaultSensorStatus.STOPPED,
    )
    def asset_check_alert_sensor(context: SensorEvaluationContext):
        if not sinks:
            return SkipReason("no alert sink is configured")
        records = finished_runs_after(context.instance, context.cursor, limit=50)
        sent = 0
        for run_record in records:
            run = run_record.dagster_run
            alerts = _alerts_for_run(context.instance, run, min_severity, ui_url)
            try:
                for alert in alerts:
                    for deliver in sinks:
                        deliver(alert)
            except DeliveryError as error:
                context.log.warning(f"alert delivery failed, retrying next tick: {error}")
                return SkipReason(f"delivery failed: {error}")
            sent += len(alerts)
            context.update_cursor(cursor_after(run_record))
        if not sent:
            return SkipReason("no new failures")
        return SkipReason(f"sent {sent} alert(s)")

    return asset_check_alert_sensor
