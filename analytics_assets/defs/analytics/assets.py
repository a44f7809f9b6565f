"""Analytics: per-conversation quality and satisfaction (reports build on it)."""

import hashlib
import time
from datetime import UTC, date, datetime, timedelta

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
)

from analytics_assets import tables
from analytics_assets.analytics.checks import rejected_records_note
from analytics_assets.analytics.reports import (
    REPORT_COLUMNS,
    REPORT_SCHEMA,
    with_changes,
    with_missing_inputs,
)
from analytics_assets.analytics.reports import daily_report as build_daily_report
from analytics_assets.analytics.reports import period_report as build_period_report
from analytics_assets.analytics.return_prediction import (
    ACTIVITY_COLUMNS,
    forecasts,
)
from analytics_assets.analytics.return_prediction import (
    HISTORY_DAYS as PREDICTION_HISTORY_DAYS,
)
from analytics_assets.analytics.scores import ANALYTICS_SCHEMA
from analytics_assets.analytics.scores import conversation_analytics as score_conversations
from analytics_assets.analytics.users import HISTORY_DAYS, USER_SCHEMA
from analytics_assets.analytics.users import user_analytics as build_user_analytics
from analytics_assets.defs.analytics.prediction_metadata import prediction_metadata
from analytics_assets.defs.analytics.report_metadata import report_metadata
from analytics_assets.defs.day_metadata import (
    add_day_metadata,
    add_next_day_digests,
    analytics_metadata,
    charted,
    run_metadata,
    users_metadata,
)
from analytics_assets.defs.partitions import (
    FIRST_DAY,
    daily_partitions,
    days_in,
    messages_of_conversations_started_that_day,
    monthly_partitions,
    weekly_partitions,
)
from analytics_assets.defs.queues import HEAVY_STEP_TAGS
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.operations.usage import StepUsage
from analytics_assets.storage.placement import lake_and_mongo
from analytics_assets.transforms.records import MESSAGE_SCHEMA, is_lost, is_superseded


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    **lake_and_mongo("conversation_analytics"),
    group_name="analytics",
    kinds={"polars", "parquet", "mongodb"},
    # A day of messages in memory: the `heavy` pod size under the k8s executor.
    op_tags=HEAVY_STEP_TAGS,
    ins={
        tables.CONVERSATIONS: AssetIn(),
        tables.CONVERSATION_CATEGORIES: AssetIn(),
        tables.CONVERSATION_MESSAGES: messages_of_conversations_started_that_day(),
    },
    description="Per conversation: duration, turns, latency p50/p95, tokens, resolution "
    "signals, and quality and satisfaction scores in [0, 1] with their components "
    "(docs/metrics.md).",
)
def conversation_analytics(
    context: AssetExecutionContext,
    conversations: pl.DataFrame,
    conversation_categories: pl.DataFrame,
    conversation_messages: pl.LazyFrame,
) -> MaterializeResult[pl.DataFrame]:
    usage = StepUsage.start()
    started = time.perf_counter()
    # A lazy scan of the lake: only the messages of these conversations are read.
    messages = _typed(conversation_messages, MESSAGE_SCHEMA)
    analytics = score_conversations(conversations, messages, conversation_categories)
    seconds = time.perf_counter() - started
    add_day_metadata(context, analytics, analytics_metadata)
    add_next_day_digests(context, conversations, {tables.CONVERSATION_MESSAGES: messages})
    return MaterializeResult(
        value=analytics,
        metadata=run_metadata(
            context, score_seconds=round(seconds, 3), **usage.figures(analytics.height)
        ),
    )


def _day_and_the_one_before() -> TimeWindowPartitionMapping:
    # The day before is read for the period-over-period change; it may not exist yet.
    return TimeWindowPartitionMapping(
        start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
    )


def _typed(frame: pl.LazyFrame, schema: dict) -> pl.LazyFrame:
    """The scan, or a typed empty frame when no day of it exists in the lake."""
    return frame if frame.collect_schema().names() else pl.LazyFrame(schema=schema)


def _collect(frame: pl.LazyFrame, schema: dict, columns: list[str]) -> pl.DataFrame:
    """The columns a report needs, and only those."""
    return _typed(frame, schema).select(columns).collect()


def _counts_by_day(frame: pl.LazyFrame) -> dict:
    if not frame.collect_schema().names():
        return {}
    return dict(frame.group_by("day").len().collect().iter_rows())


def _messages_by_day(messages: pl.LazyFrame) -> dict:
    """Per day, its messages but those also held on the day before: NocoDB may deliver a
    message again after midnight, and each day keeps its copy (validation is per day). The
    day before's report counted it; counted again, a week's `messages` held it twice while
    its conversations' `message_count` held it once."""
    names = messages.collect_schema().names()
    if not names:
        return {}
    key = ["day", "conversation_id", "message_id"]
    held = messages.select(key).unique()
    the_day_after = held.with_columns(pl.col("day") + timedelta(days=1))
    first_held = held.join(the_day_after, on=key, how="anti")
    return dict(first_held.group_by("day").len().collect().iter_rows())


def _errors_by_day(processing_errors: pl.LazyFrame) -> tuple[dict, dict]:
    """Per day, the records lost to validation, and the older copies of a kept record (shown,
    not lost), in one read of the table. A record kept with a wrong value left empty is
    neither."""
    if not processing_errors.collect_schema().names():
        return {}, {}
    reason = pl.col("reason")
    counts = (
        processing_errors.group_by("day")
        .agg(is_lost(reason).sum().alias("lost"), is_superseded(reason).sum().alias("copies"))
        .collect()
    )
    return dict(zip(counts["day"], counts["lost"], strict=True)), dict(
        zip(counts["day"], counts["copies"], strict=True)
    )


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    **lake_and_mongo("analytics_reports"),
    group_name="analytics",
    kinds={"polars", "parquet", "mongodb"},
    ins={
        tables.CONVERSATION_ANALYTICS: AssetIn(
            partition_mapping=_day_and_the_one_before(),
            metadata={"allow_missing_partitions": True},
        ),
        # Only counted: a lazy scan reads the day and the ids, not the messages. Two days
        # back: the day before's count, which the change compares with, leaves out its copies
        # of messages held on the day before it (`_messages_by_day`); read from one day back,
        # they counted again, and every scheduled day's change in messages was off.
        tables.CONVERSATION_MESSAGES: AssetIn(
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=-2, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
            metadata={"allow_missing_partitions": True},
        ),
        tables.PROCESSING_ERRORS: AssetIn(),
        # Only counted, for the share of the day's records rejected.
        tables.CONVERSATION_HEADERS: AssetIn(),
        tables.USER_ANALYTICS: AssetIn(),
    },
    description="The day at a glance: volumes, new and returning users, topic/intent/"
    "sentiment/language distributions with the change since the day before, rising topics, "
    "quality and satisfaction (mean and distribution), latency, tokens, per-model breakdown "
    "with significance, errors.",
)
def daily_report(
    context: AssetExecutionContext,
    conversation_analytics: pl.LazyFrame,
    conversation_messages: pl.LazyFrame,
    processing_errors: pl.LazyFrame,
    conversation_headers: pl.LazyFrame,
    user_analytics: pl.DataFrame,
    lake: LakeResource,
) -> MaterializeResult[pl.DataFrame]:
    usage = StepUsage.start()
    started = time.perf_counter()
    analytics = _collect(conversation_analytics, ANALYTICS_SCHEMA, REPORT_COLUMNS)
    messages = _messages_by_day(conversation_messages)
    # Every row validation accepted, a copy held the day before included: the share of
    # records rejected is of the records the day received, as error_rate_below_threshold
    # counts them (the note said 2.15 % of a day the check passed at 1.94 %).
    message_rows = _counts_by_day(conversation_messages)
    lost, superseded = _errors_by_day(processing_errors)
    headers = _counts_by_day(conversation_headers)
    new_users = (
        user_analytics.filter(~pl.col("returned_within_30d")).group_by("day").agg("user_id")
        if user_analytics.height
        else pl.DataFrame(schema={"day": pl.Date(), "user_id": pl.List(pl.String())})
    )
    new_user_ids = dict(new_users.iter_rows())
    days = days_in(context.partition_time_window)

    def report_of(day):
        return build_daily_report(
            day,
            analytics.filter(pl.col("day") == day),
            messages=messages.get(day, 0),
            # Older copies of a kept record are not rejections (the rate leaves them out
            # too): a day of 120 re-delivered records and nothing wrong said "120 rejected".
            errors=lost.get(day, 0),
            new_user_ids=new_user_ids.get(day, ()),
        )

    # The inputs each day's report is built from, read where they may be missing (the day
    # before, or the day itself, not materialized): a gap is named in the report and fails
    # daily_report_inputs_complete, instead of a report with no change and no warning. Days
    # before the lake's first day of an input are before the history, not a gap.
    stored = lake.lake()
    wanted = [days[0] - timedelta(days=1), *days]
    held = {
        table: stored.days_present(table)
        for table in (tables.CONVERSATION_ANALYTICS, tables.CONVERSATION_MESSAGES)
    }
    held_set = {table: set(present) for table, present in held.items()}
    headers_held = set(stored.days_present(tables.CONVERSATION_HEADERS))

    def missing_for(day) -> list[str]:
        return [
            f"{table} {day.isoformat()}"
            for table, present in held.items()
            if present and day >= present[0] and day not in held_set[table]
        ]

    analytics_held = held[tables.CONVERSATION_ANALYTICS]

    def look_back_gaps(day) -> list[str]:
        # A user is new when not seen in the 30 days before: with one of them missing, a
        # returning user counts as new, and the report would say so without a word.
        return [
            f"{tables.CONVERSATION_ANALYTICS} {earlier.isoformat()} (new users' look-back)"
            for earlier in (day - timedelta(days=n) for n in range(HISTORY_DAYS, 1, -1))
            if analytics_held
            and earlier >= analytics_held[0]
            and earlier not in held_set[tables.CONVERSATION_ANALYTICS]
        ]

    previous = report_of(wanted[0])
    reports = []
    for day in days:
        gaps_before = missing_for(day - timedelta(days=1))
        # Against a missing day before, every change would be an artefact of the gap.
        report = with_changes(report_of(day), None if gaps_before else previous)
        notes = look_back_gaps(day) + missing_for(day) + gaps_before
        # A day that lost more records than error_rate_below_threshold allows is built, and
        # says so: it is not a day to act on. Judged only while the lake holds the day's
        # messages and headers: past their retention, every rejection would look like most
        # of the day.
        rejected = (
            rejected_records_note(
                day,
                lost.get(day, 0),
                message_rows.get(day, 0) + headers.get(day, 0),
                superseded.get(day, 0),
            )
            if day in held_set[tables.CONVERSATION_MESSAGES] and day in headers_held
            else None
        )
        notes += [rejected] if rejected else []
        reports.append(with_missing_inputs(report, notes))
        previous = report
    frame = pl.concat(reports)
    seconds = time.perf_counter() - started
    # Each day's summary, chart and headline numbers are that day's report's.
    for report in reports:
        key = report["period"][0]
        context.add_asset_metadata(
            {
                **report_metadata(report, with_chart=charted(context.partition_keys, key)),
                # Which users were active, as a digest: a later day's new and returning users
                # depend on it (defs/analytics/sensors.py rebuilds them when it changes).
                USERS_DIGEST: users_digest(report["user_ids"].to_list()[0]),
            },
            partition_key=key,
        )
    return MaterializeResult(
        value=frame,
        metadata=run_metadata(
            context,
            build_seconds=round(seconds, 3),
            conversations_per_second=round(analytics.height / seconds) if seconds else 0,
            **usage.figures(analytics.height),
        ),
    )


# The daily report's metadata entry holding `users_digest` of the day's active users.
USERS_DIGEST = "users_digest"


def users_digest(user_ids) -> str:
    """A short digest of a set of (pseudonymized) user ids: it tells whether the set
    changed, and nothing about who is in it."""
    joined = "\n".join(sorted(set(user_ids or ())))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _period_report(
    name: str, kind: str, partitions_def, period_of, previous_start, description: str
):
    """A report of a longer period, combined from its daily reports (never raw records). The
    previous period's days are read too, for the change between the two."""

    @asset(
        name=name,
        partitions_def=partitions_def,
        **lake_and_mongo("analytics_reports"),
        group_name="analytics",
        kinds={"polars", "parquet", "mongodb"},
        ins={
            tables.DAILY_REPORT: AssetIn(
                partition_mapping=TimeWindowPartitionMapping(
                    start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
                ),
                metadata={"allow_missing_partitions": True},
            )
        },
        description=description,
    )
    def period_report(
        context: AssetExecutionContext, daily_report: pl.DataFrame
    ) -> MaterializeResult[pl.DataFrame]:
        window = context.partition_time_window
        start, end = window.start.date(), window.end.date()
        days = _daily_rows(daily_report)
        report = build_period_report(
            kind,
            start,
            end,
            previous_start(start),
            days,
            period_of=period_of,
            today=datetime.now(UTC).date(),
            first_day=FIRST_DAY,
        )
        current = days.filter(pl.col("day") >= start)
        previous_days = days.filter(pl.col("day") < start)
        return MaterializeResult(
            value=report,
            metadata={
                **report_metadata(report),
                "days": current.height,
                "previous_period_days": previous_days.height,
            },
        )

    return period_report


weekly_report = _period_report(
    tables.WEEKLY_REPORT,
    "weekly",
    weekly_partitions,
    lambda start: start.isoformat(),
    lambda start: start - timedelta(days=7),
    "The week (Monday to Sunday) combined from its daily reports, with the change since the "
    "week before.",
)
monthly_report = _period_report(
    tables.MONTHLY_REPORT,
    "monthly",
    monthly_partitions,
    lambda start: start.strftime("%Y-%m"),
    lambda start: (start - timedelta(days=1)).replace(day=1),
    "The calendar month combined from its daily reports, with the change since the month before.",
)


def _missing_days(held: list[date], first: date, last: date) -> list[date]:
    """The days of [first, last] the lake lacks, from its first held day on (before it there
    is no history to miss)."""
    if not held:
        return []
    present = set(held)
    start = max(first, held[0])
    return [
        start + timedelta(days=n)
        for n in range((last - start).days + 1)
        if start + timedelta(days=n) not in present
    ]


def _daily_rows(daily_report: pl.DataFrame) -> pl.DataFrame:
    # No day of the period materialized yet: combine nothing into an empty-but-valid report.
    if not daily_report.width:
        return pl.DataFrame(schema=REPORT_SCHEMA)
    # Days reported before a field was added count it as zero / empty, not as an error.
    missing = [name for name in REPORT_SCHEMA if name not in daily_report.columns]
    return (
        daily_report.with_columns(pl.lit(None, REPORT_SCHEMA[name]).alias(name) for name in missing)
        .with_columns(pl.col(n).fill_null(0) for n in missing if REPORT_SCHEMA[n].is_numeric())
        .select(list(REPORT_SCHEMA))
    )


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    **lake_and_mongo("user_analytics"),
    group_name="analytics",
    kinds={"polars", "parquet", "mongodb"},
    # A day of messages in memory: the `heavy` pod size under the k8s executor.
    op_tags=HEAVY_STEP_TAGS,
    ins={
        # The day and the 30 before it, to tell returning users from new ones (a lazy scan:
        # only the columns used are read).
        tables.CONVERSATION_ANALYTICS: AssetIn(
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=-HISTORY_DAYS, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
            metadata={"allow_missing_partitions": True},
        ),
    },
    description="Per user and day: activity, topics, sentiment, satisfaction, models used, "
    "first seen within the 30 days before, and whether they had been active in the 7 / 30 "
    "days before (a returning user; forward return is user_return_predictions').",
)
def user_analytics(
    context: AssetExecutionContext, conversation_analytics: pl.LazyFrame
) -> MaterializeResult[pl.DataFrame]:
    window = conversation_analytics.select(
        "user_id", "day", "message_count", "topic", "model", "sentiment_end_score",
        "satisfaction_score", "quality_score",
    ).collect()  # fmt: skip
    users = pl.concat(
        [build_user_analytics(day, window) for day in days_in(context.partition_time_window)]
    )
    add_day_metadata(context, users, users_metadata)
    return MaterializeResult(value=users, metadata=run_metadata(context))


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    **lake_and_mongo("user_return_predictions"),
    group_name="analytics",
    kinds={"polars", "numpy", "parquet", "mongodb"},
    ins={
        # The day and the 89 before it: training, evaluation and the day's features (a lazy
        # scan: only the activity columns are read; days not materialized are skipped).
        tables.USER_ANALYTICS: AssetIn(
            partition_mapping=TimeWindowPartitionMapping(
                start_offset=-(PREDICTION_HISTORY_DAYS - 1),
                end_offset=0,
                allow_nonexistent_upstream_partitions=True,
            ),
            metadata={"allow_missing_partitions": True},
        ),
    },
    description="Per user active in the last 28 days, on each day: the probability of "
    "returning within 7 days and the expected conversations in them, from a model trained "
    "on the 90 days up to the day with a time-based split, and the last-week baseline's "
    "numbers; the evaluation (AUC, Brier, calibration) is in the metadata (docs/metrics.md).",
)
def user_return_predictions(
    context: AssetExecutionContext, user_analytics: pl.LazyFrame, lake: LakeResource
) -> MaterializeResult[pl.DataFrame]:
    usage = StepUsage.start()
    started = time.perf_counter()
    schema = {name: USER_SCHEMA[name] for name in ACTIVITY_COLUMNS}
    # Days written before a release added an activity column (the scored counts) read it as
    # null, even where every day read is such a day.
    read = _typed(user_analytics, schema)
    present = read.collect_schema().names()
    activity = (
        read.with_columns(
            pl.lit(None, schema[name]).alias(name) for name in schema if name not in present
        )
        .select(ACTIVITY_COLUMNS)
        .collect()
    )
    frames = []
    days = days_in(context.partition_time_window)
    held = lake.lake().days_present(tables.USER_ANALYTICS)
    day_started = time.perf_counter()
    # One forecast per day, sharing the features and the fits' starts across the range.
    for day, result in zip(days, forecasts(activity, days), strict=True):
        frames.append(result.predictions)
        # A day of user analytics missing from the 90 read (after the lake's first) drops
        # its users from the features and the labels, and nothing said so.
        missing = _missing_days(held, day - timedelta(days=PREDICTION_HISTORY_DAYS - 1), day)
        if missing:
            context.log.warning(
                f"predictions of {day} read no user_analytics of {len(missing)} day(s): "
                + ", ".join(d.isoformat() for d in missing[:5])
            )
        context.add_asset_metadata(
            {
                **prediction_metadata(
                    result,
                    seconds=time.perf_counter() - day_started,
                    with_chart=charted(context.partition_keys, day.isoformat()),
                ),
                "user_analytics_days_missing": len(missing),
                "user_analytics_missing": ", ".join(d.isoformat() for d in missing[:10]),
            },
            partition_key=day.isoformat(),
        )
        day_started = time.perf_counter()
    predictions = pl.concat(frames)
    seconds = time.perf_counter() - started
    return MaterializeResult(
        value=predictions,
        metadata=run_metadata(
            context,
            activity_rows=activity.height,
            predict_seconds=round(seconds, 3),
            **usage.figures(predictions.height),
        ),
    )
