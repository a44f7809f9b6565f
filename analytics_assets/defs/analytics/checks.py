"""Asset checks that alert: volume anomalies, error rate, category drift, reconciliation,
freshness. Severity: ERROR (and blocking) where a bad input would poison what is built on
it; WARN where the data may be right and the world changed."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetIn,
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    MetadataValue,
    asset_check,
    build_sensor_for_freshness_checks,
)

from analytics_assets import tables
from analytics_assets.analytics.checks import (
    drift_verdict,
    error_rate_verdict,
    reconciliation_verdict,
    values_left_empty_verdict,
    volume_verdict,
)
from analytics_assets.analytics.freshness import fresh_until, last_deadline, report_day_due
from analytics_assets.analytics.reports import REPORT_SCHEMA
from analytics_assets.defs.alerts.sensors import FRESHNESS_CHECK
from analytics_assets.defs.check_evaluations import CheckEvents, evaluations_per_day
from analytics_assets.defs.ingestion.resources import RecordSourceResource
from analytics_assets.defs.partitions import (
    daily_partitions,
    days_in,
    monthly_partitions,
    weekly_partitions,
)
from analytics_assets.transforms.records import (
    KEPT_WITHOUT_VALUE,
    KEPT_WITHOUT_VALUES,
    is_kept_without_values,
    is_lost,
    is_superseded,
    reason_without_values,
)

LAKE = "lake"


def _lake_days(
    context: AssetCheckExecutionContext, asset: str, columns: list[str], first: date, last: date
) -> tuple[pl.DataFrame, list[date]]:
    """The columns of an asset's days in [first, last] straight from the lake, and which of
    those days exist there. An asset check's inputs ignore partition mappings (they always
    hold the check's own partitions), so a trailing window cannot come through `ins`."""
    lake = getattr(context.resources, LAKE).lake()
    wanted = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    frame, present = lake.read_days(asset, wanted, columns)
    return (frame if frame is not None else pl.DataFrame()), present


def _trailing_days(
    context: AssetCheckExecutionContext, asset: str, columns: list[str]
) -> dict[date, pl.DataFrame]:
    """Per day, the asset's rows in the 7 days before each day of the run (and the run's
    own days, already written when a check runs)."""
    days = days_in(context.partition_time_window)
    frame, present = _lake_days(
        context, asset, ["day", *columns], days[0] - timedelta(days=7), days[-1]
    )
    return {day: frame.filter(pl.col("day") == day) for day in present}


def _week_before(by_day: dict[date, pl.DataFrame], day: date) -> list[pl.DataFrame]:
    return [
        by_day[past]
        for past in (day - timedelta(days=n) for n in range(7, 0, -1))
        if past in by_day
    ]


def _per_day(
    context: AssetCheckExecutionContext, judge, severity: AssetCheckSeverity
) -> CheckEvents:
    """A run may cover many days (a single-run backfill): each day is judged on its own, and
    its verdict and figures are recorded on that day's partition of the check."""

    def result_of(partition_key: str) -> AssetCheckResult:
        verdict = judge(date.fromisoformat(partition_key))
        return AssetCheckResult(passed=verdict.passed, severity=severity, metadata=verdict.metadata)

    return evaluations_per_day(context, result_of)


@asset_check(
    asset=tables.CONVERSATION_MESSAGES,
    partitions_def=daily_partitions,
    required_resource_keys={LAKE},
    description="Messages of each day vs the trailing 7-day median (WARN: volume moves with "
    "the business; a halving or doubling deserves a look, not a stop).",
)
def message_volume_within_trailing_range(
    context: AssetCheckExecutionContext, conversation_messages: pl.DataFrame
) -> CheckEvents:
    by_day = _trailing_days(context, tables.CONVERSATION_MESSAGES, [])

    def judge(day: date):
        today = conversation_messages.filter(pl.col("day") == day).height
        return volume_verdict(today, [past.height for past in _week_before(by_day, day)])

    yield from _per_day(context, judge, AssetCheckSeverity.WARN)


# Not blocking: a blocking check is judged per step, not per day, so one day over the rate
# in a 60-day single-run backfill kept every day's report and MongoDB mirror from being
# built. That day's report is built and marks itself incomplete instead (daily_report), and
# daily_report_inputs_complete fails for it.
@asset_check(
    asset=tables.PROCESSING_ERRORS,
    partitions_def=daily_partitions,
    additional_ins={
        tables.CONVERSATION_MESSAGES: AssetIn(),
        tables.CONVERSATION_HEADERS: AssetIn(),
    },
    description="Share of each day's records rejected (ERROR above 2 %: that day's report "
    "is marked incomplete, `complete: false` with the rate in `missing_inputs`, and "
    "daily_report_inputs_complete fails for it). Older copies of a record NocoDB holds "
    "twice are shown, not counted: their newest copy was kept; so are records kept with a "
    "wrong optional value (a rating of 7) left empty.",
)
def error_rate_below_threshold(
    context: AssetCheckExecutionContext,
    processing_errors: pl.DataFrame,
    conversation_messages: pl.DataFrame,
    conversation_headers: pl.DataFrame,
) -> CheckEvents:
    def count(frame: pl.DataFrame, day: date) -> int:
        return frame.filter(pl.col("day") == day).height

    superseded = is_superseded(pl.col("reason"))
    lost = is_lost(pl.col("reason"))

    def judge(day: date):
        accepted = count(conversation_messages, day) + count(conversation_headers, day)
        errors = processing_errors.filter(pl.col("day") == day)
        return error_rate_verdict(
            errors.filter(lost).height, accepted, errors.filter(superseded).height
        )

    yield from _per_day(context, judge, AssetCheckSeverity.ERROR)


@asset_check(
    asset=tables.PROCESSING_ERRORS,
    partitions_def=daily_partitions,
    required_resource_keys={LAKE},
    description="Share of each day's records kept with a wrong optional value left empty "
    "(a rating of 7, feedback 'thumbs_up', a negative token count). WARN above 2 %: nothing "
    "was lost, but a column is likely mapped or written wrong and a metric (satisfaction, "
    "feedback, cost) goes empty for those records. Metadata: the reasons, values left out.",
)
def optional_values_mostly_valid(
    context: AssetCheckExecutionContext, processing_errors: pl.DataFrame
) -> CheckEvents:
    days = days_in(context.partition_time_window)
    # The days' record counts from the lake, the day column alone: the messages' text is
    # not needed to count them.
    accepted = Counter()
    for table in (tables.CONVERSATION_MESSAGES, tables.CONVERSATION_HEADERS):
        frame, _ = _lake_days(context, table, ["day"], days[0], days[-1])
        if frame.height:
            accepted.update(dict(frame.group_by("day").len().iter_rows()))
    kept = processing_errors.filter(is_kept_without_values(pl.col("reason")))
    endings = (f"; {KEPT_WITHOUT_VALUE}", f"; {KEPT_WITHOUT_VALUES}")

    def judge(day: date):
        of_day = kept.filter(pl.col("day") == day)
        reasons: Counter[str] = Counter()
        for reason in of_day.select(reason_without_values(pl.col("reason"))).to_series():
            for ending in endings:
                reason = reason.removesuffix(ending)
            reasons.update(reason.split("; "))
        return values_left_empty_verdict(
            of_day.height, accepted.get(day, 0), dict(reasons.most_common(10))
        )

    yield from _per_day(context, judge, AssetCheckSeverity.WARN)


@asset_check(
    asset=tables.CONVERSATION_CATEGORIES,
    partitions_def=daily_partitions,
    required_resource_keys={LAKE},
    description="Each day's topic distribution vs the previous 7 days by population stability "
    "index (WARN above 0.25: a taxonomy or product change, or a broken classifier).",
)
def topic_distribution_stable(
    context: AssetCheckExecutionContext,
    conversation_categories: pl.DataFrame,
) -> CheckEvents:
    by_day = _trailing_days(context, tables.CONVERSATION_CATEGORIES, ["topic"])

    def judge(day: date):
        today = conversation_categories.filter(pl.col("day") == day)
        current = dict(today.group_by("topic").len().iter_rows())
        days = [
            dict(past.group_by("topic").len().iter_rows()) for past in _week_before(by_day, day)
        ]
        return drift_verdict(current, days)

    yield from _per_day(context, judge, AssetCheckSeverity.WARN)


@asset_check(
    asset=tables.DAILY_REPORT,
    partitions_def=daily_partitions,
    description="Each day's report was built from all its inputs (ERROR, naming the missing "
    "day): a day of conversation_analytics or conversation_messages missing from the lake, the "
    "day itself or the day before, makes its numbers or its change since the day before "
    "wrong (rebuild the named day, then this one); so does more than 2 % of the day's "
    "records rejected (fix them in NocoDB).",
)
def daily_report_inputs_complete(
    context: AssetCheckExecutionContext, daily_report: pl.DataFrame
) -> CheckEvents:
    def result_of(partition_key: str) -> AssetCheckResult:
        rows = daily_report.filter(pl.col("period") == partition_key)
        missing = sorted(
            {name for names in rows["missing_inputs"].to_list() for name in names or []}
        )
        return AssetCheckResult(
            passed=rows.height == 1 and not missing,
            severity=AssetCheckSeverity.ERROR,
            metadata={"missing_inputs": missing, "reports": rows.height},
            description=f"Built without {', '.join(missing)}" if missing else None,
        )

    yield from evaluations_per_day(context, result_of)


def _reconciles_with_its_days(asset: str, kind: str, partitions_def):
    @asset_check(
        name=f"{asset}_reconciles",
        asset=asset,
        partitions_def=partitions_def,
        required_resource_keys={LAKE},
        description=f"The {kind} report's totals, users and topic counts equal those of its "
        "daily reports, and none of its past days is missing or incomplete (ERROR: a report "
        "that disagrees with its days, or was built without some, is wrong somewhere).",
    )
    def reconciles(context: AssetCheckExecutionContext, report: pl.DataFrame) -> AssetCheckResult:
        window = context.partition_time_window
        reports, _ = _lake_days(
            context, tables.DAILY_REPORT, list(REPORT_SCHEMA), window.start.date(),
            window.end.date() - timedelta(days=1),
        )  # fmt: skip
        days = reports.to_dicts()
        row = report.row(0, named=True)
        verdict = reconciliation_verdict(row, days)
        history = getattr(context.resources, LAKE).lake().days_present(tables.DAILY_REPORT)
        missing = _missing_between(row.get("missing_inputs") or [], history)
        return AssetCheckResult(
            passed=verdict.passed and not missing,
            severity=AssetCheckSeverity.ERROR,
            metadata={**verdict.metadata, "missing_inputs": missing},
            description=f"Built without {', '.join(missing[:5])}"
            + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            if missing
            else None,
        )

    return reconciles


def _missing_between(missing_inputs: list[str], history: list[date]) -> list[str]:
    """What a period report was built without that its check fails on. A week with a day
    missing agreed with the days it had, and passed: the report marks itself incomplete,
    but only the daily report had a check that read that. Its days' own missing inputs
    count, and a day missing between two days of `history` (every day the lake holds a
    daily report of). Days before the first or after the last of those do not: a month the
    source began or ended in (the sample's November, or an October before it) was never
    more, and yesterday's missing report is the freshness check's and its run's alert. A
    period in progress misses nothing. (The bounds were the period's own days: a week
    without its Monday, or a month without its last days, passed.)"""
    prefix = f"{tables.DAILY_REPORT} "
    missing = []
    for name in missing_inputs:
        if name.startswith("in progress"):
            continue
        if name.startswith(prefix):
            day = date.fromisoformat(name.removeprefix(prefix))
            if not history or not history[0] < day < history[-1]:
                continue
        missing.append(name)
    return missing


weekly_report_reconciles = _reconciles_with_its_days(
    tables.WEEKLY_REPORT, "weekly", weekly_partitions
)
monthly_report_reconciles = _reconciles_with_its_days(
    tables.MONTHLY_REPORT, "monthly", monthly_partitions
)


@asset_check(
    name=FRESHNESS_CHECK,
    asset=tables.DAILY_REPORT,
    description="The newest daily report due exists (WARN for the team's morning): "
    "yesterday's from 06:00 UTC on, or, where the source's data ends (an export such as the "
    "bundled sample), that of its last day.",
)
def freshness_check(
    context: AssetCheckExecutionContext, record_source: RecordSourceResource
) -> AssetCheckResult:
    now = datetime.now(UTC)
    data_end = record_source.data_end()
    due = report_day_due(now, data_end).isoformat()
    materialized = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(tables.DAILY_REPORT), asset_partitions=[due]),
        limit=1,
    ).records
    metadata = {
        "expected_partition": due,
        "data_end": str(data_end) if data_end else "none (live source)",
        "deadline": MetadataValue.timestamp(last_deadline(now)),
    }
    if materialized:
        # Read by the freshness sensor: no need to evaluate again before the next deadline.
        metadata["dagster/fresh_until_timestamp"] = MetadataValue.timestamp(fresh_until(now))
    return AssetCheckResult(
        passed=bool(materialized),
        severity=AssetCheckSeverity.WARN,
        description=f"The daily report of {due} "
        + ("exists." if materialized else "is overdue: it has not been materialized."),
        metadata=metadata,
    )


# Runs the freshness check when it can have become overdue (after each deadline, or once
# the report has been materialized since it failed).
freshness_checks = [freshness_check]
# On by default: inside the runs alone the check would only be evaluated by the runs whose
# absence it is meant to catch, and a stalled pipeline would never say its report is stale.
freshness_sensor = build_sensor_for_freshness_checks(
    freshness_checks=freshness_checks, default_status=DefaultSensorStatus.RUNNING
)
