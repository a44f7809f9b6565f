"""Asset checks that alert: volume anomalies, error rate, category drift, reconciliation,
freshness. Severity: ERROR (and blocking) where a bad input would poison what is built on
it; WARN where the data may be right and the world changed."""

from datetime import date, timedelta

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset_check,
    build_sensor_for_freshness_checks,
    build_time_partition_freshness_checks,
)

from analytics_assets.analytics.checks import (
    drift_verdict,
    error_rate_verdict,
    volume_verdict,
)
from analytics_assets.defs.ingestion.partitions import (
    daily_partitions,
    days_in,
    weekly_partitions,
)


def _previous_week_of_reports() -> AssetIn:
    return AssetIn(
        "daily_report",
        partition_mapping=TimeWindowPartitionMapping(
            start_offset=-7, end_offset=-1, allow_nonexistent_upstream_partitions=True
        ),
        metadata={"allow_missing_partitions": True},
    )


def _per_day(days: list, judge, severity: AssetCheckSeverity) -> AssetCheckResult:
    """A run may cover many days (a single-run backfill): each day is judged on its own, the
    check fails if any day does, and the metadata shows every day's figures."""
    verdicts = {day.isoformat(): judge(day) for day in days}
    failed = [day for day, verdict in verdicts.items() if not verdict.passed]
    return AssetCheckResult(
        passed=not failed,
        severity=severity,
        metadata={
            "failed_days": failed,
            "days": MetadataValue.json({day: v.metadata for day, v in verdicts.items()}),
        },
    )


def _history(history: pl.DataFrame, day: date) -> pl.DataFrame:
    """The daily reports of the 7 days before `day`."""
    if not history.width:
        return history
    return history.filter(
        pl.col("day").is_between(day - timedelta(days=7), day - timedelta(days=1))
    )


@asset_check(
    asset="conversation_messages",
    partitions_def=daily_partitions,
    additional_ins={"history": _previous_week_of_reports()},
    description="Messages of each day vs the trailing 7-day median (WARN: volume moves with "
    "the business; a halving or doubling deserves a look, not a stop).",
)
def message_volume_within_trailing_range(
    context: AssetCheckExecutionContext, conversation_messages: pl.DataFrame, history: pl.DataFrame
) -> AssetCheckResult:
    def judge(day: date):
        today = conversation_messages.filter(pl.col("day") == day).height
        past = _history(history, day)
        return volume_verdict(today, past["messages"].to_list() if past.width else [])

    return _per_day(days_in(context.partition_time_window), judge, AssetCheckSeverity.WARN)


@asset_check(
    asset="processing_errors",
    partitions_def=daily_partitions,
    blocking=True,
    additional_ins={"conversation_messages": AssetIn(), "conversation_headers": AssetIn()},
    description="Share of each day's records rejected (ERROR, blocking: reports built on a "
    "day that lost more than 2 % of its records would be wrong).",
)
def error_rate_below_threshold(
    context: AssetCheckExecutionContext,
    processing_errors: pl.DataFrame,
    conversation_messages: pl.DataFrame,
    conversation_headers: pl.DataFrame,
) -> AssetCheckResult:
    def count(frame: pl.DataFrame, day: date) -> int:
        return frame.filter(pl.col("day") == day).height

    def judge(day: date):
        accepted = count(conversation_messages, day) + count(conversation_headers, day)
        return error_rate_verdict(count(processing_errors, day), accepted)

    return _per_day(days_in(context.partition_time_window), judge, AssetCheckSeverity.ERROR)


@asset_check(
    asset="conversation_categories",
    partitions_def=daily_partitions,
    additional_ins={"history": _previous_week_of_reports()},
    description="Each day's topic distribution vs the previous 7 days by population stability "
    "index (WARN above 0.25: a taxonomy or product change, or a broken classifier).",
)
def topic_distribution_stable(
    context: AssetCheckExecutionContext,
    conversation_categories: pl.DataFrame,
    history: pl.DataFrame,
) -> AssetCheckResult:
    def judge(day: date):
        today = conversation_categories.filter(pl.col("day") == day)
        current = dict(today.group_by("topic").len().iter_rows())
        past = _history(history, day)
        days = (
            [{t["value"]: t["count"] for t in topics} for topics in past["topics"].to_list()]
            if past.width
            else []
        )
        return drift_verdict(current, days)

    return _per_day(days_in(context.partition_time_window), judge, AssetCheckSeverity.WARN)


@asset_check(
    asset="weekly_report",
    partitions_def=weekly_partitions,
    additional_ins={"daily_report": AssetIn(metadata={"allow_missing_partitions": True})},
    description="The week's totals equal the sum of its daily reports (ERROR).",
)
def weekly_report_reconciles(
    weekly_report: pl.DataFrame, daily_report: pl.DataFrame
) -> AssetCheckResult:
    week = weekly_report.row(0, named=True)
    mismatches = {
        name: {
            "week": week[name],
            "days": int(daily_report[name].sum()) if daily_report.width else 0,
        }
        for name in ("conversations", "messages", "total_tokens", "errors")
        if week[name] != (int(daily_report[name].sum()) if daily_report.width else 0)
    }
    return AssetCheckResult(
        passed=not mismatches,
        severity=AssetCheckSeverity.ERROR,
        metadata={"mismatches": mismatches, "days": daily_report.height},
    )


# Yesterday's daily report must exist by 06:00 UTC (WARN for the team's morning).
freshness_checks = build_time_partition_freshness_checks(
    assets=["daily_report"], deadline_cron="0 6 * * *", timezone="UTC"
)
freshness_sensor = build_sensor_for_freshness_checks(freshness_checks=freshness_checks)
