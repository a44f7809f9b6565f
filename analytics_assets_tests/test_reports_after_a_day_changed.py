"""A day built again after the reports that read it: `reports_after_a_day_changed_sensor`
builds the next days' daily reports, then the closed week and month, again.

The real report assets and the sensor, on a local lake and an in-memory instance; the
assets the reports read are stand-ins writing chosen rows (the sensor only reads which
partition was built when)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import polars as pl
import pytest
from dagster import (
    BackfillPolicy,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    asset,
    build_sensor_context,
    materialize,
)

from analytics_assets import tables
from analytics_assets.analytics.scores import ANALYTICS_SCHEMA
from analytics_assets.defs.analytics import assets as report_assets
from analytics_assets.defs.analytics.sensors import reports_after_a_day_changed
from analytics_assets.defs.partitions import daily_partitions, days_in, range_tags
from analytics_assets.defs.storage.lake import LakeResource, ParquetLakeIOManager
from analytics_assets.storage.placement import LAKE_AND_MONGO_IO_MANAGER

MONDAY = date(2026, 11, 9)
WEEK = [MONDAY + timedelta(days=n) for n in range(7)]
LATE = date(2026, 11, 11)
# Stand-ins for what the reports read, and the real user analytics (new and returning users).
STAND_INS = (
    tables.CONVERSATION_MESSAGES,
    tables.CONVERSATION_HEADERS,
    tables.PROCESSING_ERRORS,
    tables.CONVERSATION_ANALYTICS,
)
UPSTREAM = (*STAND_INS, tables.USER_ANALYTICS)
# The users of the conversations LATE gets late, who also come back two days later.
RETURNING = [f"returning-{n}" for n in range(5)]


def _user(day: date, number: int) -> str:
    """Each conversation its own user, but for LATE's late ones and their return two days
    later, by the same users (`RETURNING`)."""
    if (day == LATE and number >= 10) or (day == LATE + timedelta(days=2) and number < 5):
        return RETURNING[number % 5]
    return f"{day}-u{number}"


def _rows(conversations_on_late_day: int, tokens: int = 10) -> dict[str, pl.DataFrame]:
    """Ten conversations a day of two messages each (more on LATE, and `tokens` each
    there)."""
    blank = dict.fromkeys(ANALYTICS_SCHEMA)
    analytics, messages = [], []
    for day in WEEK:
        count = conversations_on_late_day if day == LATE else 10
        for number in range(count):
            conversation = f"{day}-c{number}"
            analytics.append(blank | {
                "day": day, "conversation_id": conversation, "user_id": _user(day, number),
                "model": "m", "feedback_up": 0, "feedback_down": 0,
                "prompt_tokens": tokens if day == LATE else 10, "completion_tokens": 0,
                "total_tokens": tokens if day == LATE else 10, "topic": "billing",
                "intent": "question", "sentiment": "neutral", "language": "en",
                "categorized_via_translation": False,
            })  # fmt: skip
            messages += [
                {"day": day, "conversation_id": conversation, "message_id": f"{conversation}-{k}"}
                for k in range(2)
            ]
    analytics_frame = pl.DataFrame(analytics, schema=ANALYTICS_SCHEMA)
    return {
        tables.CONVERSATION_MESSAGES: pl.DataFrame(messages),
        tables.CONVERSATION_HEADERS: analytics_frame.select("day", "conversation_id"),
        tables.PROCESSING_ERRORS: pl.DataFrame(schema={"day": pl.Date(), "reason": pl.String()}),
        tables.CONVERSATION_ANALYTICS: analytics_frame,
    }


class _Pipeline:
    def __init__(self, root):
        self.rows: dict[str, pl.DataFrame] = {}
        lake_io = ParquetLakeIOManager(base_url=str(root))
        self.lake = LakeResource(base_url=str(root))
        self.resources = {
            "lake_io_manager": lake_io, LAKE_AND_MONGO_IO_MANAGER: lake_io, "lake": self.lake,
        }  # fmt: skip
        self.instance = DagsterInstance.ephemeral()
        self.assets = [
            *(self._stand_in(name) for name in STAND_INS),
            report_assets.user_analytics,
            report_assets.daily_report,
            report_assets.weekly_report,
            report_assets.monthly_report,
            report_assets.user_return_predictions,
        ]

    def _stand_in(self, name: str):
        @asset(name=name, partitions_def=daily_partitions, io_manager_key="lake_io_manager",
               backfill_policy=BackfillPolicy.single_run())  # fmt: skip
        def stand_in(context):
            days = days_in(context.partition_time_window)
            return self.rows[name].filter(pl.col("day").is_in(days))

        return stand_in

    def build(self, selection: list[str], **partition) -> None:
        result = materialize(
            self.assets, selection=selection, resources=self.resources,
            instance=self.instance, **partition,
        )  # fmt: skip
        assert result.success

    def run(self, requests) -> None:
        """What the requested runs build: each job's one report asset, for its partition."""
        assets_of = {
            "daily_report_job": [tables.DAILY_REPORT],
            "users_and_report_job": [tables.USER_ANALYTICS, tables.DAILY_REPORT],
            "user_return_predictions_job": [tables.USER_RETURN_PREDICTIONS],
            "weekly_report_job": [tables.WEEKLY_REPORT],
            "monthly_report_job": [tables.MONTHLY_REPORT],
        }
        for request in requests:
            self.build(assets_of[request.job_name], partition_key=request.partition_key)

    def tick(self, cursor=None):
        with build_sensor_context(instance=self.instance, cursor=cursor) as context:
            return reports_after_a_day_changed(context)

    def read(self, table: str) -> pl.DataFrame:
        return self.lake.lake().scan_all(table).collect()


def _asked(result) -> list[tuple[str, str]]:
    return [(request.job_name, request.partition_key) for request in result.run_requests]


@pytest.fixture
def built_week(tmp_path) -> _Pipeline:
    """The week as the schedules build it: its days (one range run, return predictions
    included), then the week and the month; the sensor has seen all of it and asked for
    nothing."""
    pipeline = _Pipeline(tmp_path)
    pipeline.rows = _rows(conversations_on_late_day=10)
    pipeline.build(
        [*UPSTREAM, tables.DAILY_REPORT, tables.USER_RETURN_PREDICTIONS],
        tags=range_tags(WEEK[0], WEEK[-1]),
    )
    pipeline.build([tables.WEEKLY_REPORT], partition_key=MONDAY.isoformat())
    pipeline.build([tables.MONTHLY_REPORT], partition_key="2026-11-01")
    pipeline.cursor = pipeline.tick().cursor
    return pipeline


def test_a_day_built_again_rebuilds_the_next_days_reports_then_its_week_and_month(built_week):
    """Five late conversations on the 11th: the day's report said 15, and its week and month
    kept saying 70 (complete) for good, the 12th kept comparing with 10."""
    pipeline = built_week
    pipeline.rows = _rows(conversations_on_late_day=15)
    pipeline.build([*UPSTREAM, tables.DAILY_REPORT], partition_key=LATE.isoformat())

    # First the days that read the 11th: five new users on it, so every later day's new and
    # returning users (the 12th to the 15th: the later ones were never built), with their
    # reports (the 12th's change reads the 11th's conversations, the 13th's its messages);
    # the week, the month and the newest forecast wait for them.
    first = pipeline.tick(pipeline.cursor)
    assert _asked(first) == [("users_and_report_job", f"2026-11-{day}") for day in (12, 13, 14, 15)]
    pipeline.run(first.run_requests)
    # Then the closed week and month, once, and the newest day's forecast (it reads the
    # user analytics rebuilt); the next week (the 16th's) was never built, and December is
    # in progress (or never built): neither is asked for.
    second = pipeline.tick(first.cursor)
    assert _asked(second) == [
        ("monthly_report_job", "2026-11-01"),
        ("user_return_predictions_job", "2026-11-15"),
        ("weekly_report_job", MONDAY.isoformat()),
    ]
    pipeline.run(second.run_requests)
    # The chain stops: a rebuilt daily report changes nothing its next day reads.
    third = pipeline.tick(second.cursor)
    assert third.run_requests == []

    daily = pipeline.read(tables.DAILY_REPORT)
    assert daily["conversations"].sum() == 75
    [week] = pipeline.read(tables.WEEKLY_REPORT).to_dicts()
    [month] = pipeline.read(tables.MONTHLY_REPORT).to_dicts()
    assert week["conversations"] == month["conversations"] == 75
    [next_day] = daily.filter(pl.col("day") == LATE + timedelta(days=1)).to_dicts()
    volume = {c["value"]: c["previous_count"] for c in next_day["changes"]}
    assert volume["conversations"] == 15
    # Two days later the five come back: returning users now, new ones before.
    [back] = daily.filter(pl.col("day") == LATE + timedelta(days=2)).to_dicts()
    assert (back["new_users"], back["returning_users"]) == (5, 5)
    assert week["users"] == 75 - 5


def test_a_day_built_twice_before_the_tick_still_rebuilds_the_users_after_it(built_week):
    """Late conversations on the 11th, then an unrelated rebuild of the 11th, both before
    the sensor's tick: comparing the day's two newest reports saw no change, and the 13th
    counted its five returning users new for good."""
    pipeline = built_week
    pipeline.rows = _rows(conversations_on_late_day=15)
    for _ in range(2):
        pipeline.build([*UPSTREAM, tables.DAILY_REPORT], partition_key=LATE.isoformat())
    first = pipeline.tick(pipeline.cursor)
    assert ("users_and_report_job", "2026-11-13") in _asked(first)
    pipeline.run(first.run_requests)
    [back] = (
        pipeline.read(tables.DAILY_REPORT)
        .filter(pl.col("day") == LATE + timedelta(days=2))
        .to_dicts()
    )
    assert (back["new_users"], back["returning_users"]) == (5, 5)


def test_a_change_that_keeps_the_days_users_rebuilds_only_the_reports_reading_it(built_week):
    """More tokens on the 11th, the same users: the next days' new and returning users
    stand, only the 12th's and 13th's reports (their change) are built again."""
    pipeline = built_week
    pipeline.rows = _rows(conversations_on_late_day=10, tokens=99)
    pipeline.build([*UPSTREAM, tables.DAILY_REPORT], partition_key=LATE.isoformat())
    first = pipeline.tick(pipeline.cursor)
    assert _asked(first) == [
        ("daily_report_job", "2026-11-12"),
        ("daily_report_job", "2026-11-13"),
        # Its user analytics were built again with it: the newest forecast reads them.
        ("user_return_predictions_job", "2026-11-15"),
    ]
    pipeline.run(first.run_requests)
    assert _asked(pipeline.tick(first.cursor)) == [
        ("monthly_report_job", "2026-11-01"),
        ("weekly_report_job", MONDAY.isoformat()),
    ]


def test_a_daily_report_rebuild_that_failed_no_longer_holds_back_its_week(built_week):
    """The week waited for the daily reports requested with it; when their runs failed (a
    storage outage), no new report came, and the week and month stayed stale for good. A
    failed rebuild is asked for once more; failed again, the week waits no longer."""
    pipeline = built_week
    pipeline.rows = _rows(conversations_on_late_day=10, tokens=99)
    pipeline.build([*UPSTREAM, tables.DAILY_REPORT], partition_key=LATE.isoformat())

    def fail(requests) -> None:
        for request in requests:
            pipeline.instance.add_run(DagsterRun(
                job_name=request.job_name, run_id=str(uuid.uuid4()),
                status=DagsterRunStatus.FAILURE,
                tags={"dagster/run_key": request.run_key, **request.tags},
            ))  # fmt: skip

    first = pipeline.tick(pipeline.cursor)
    pipeline.run([r for r in first.run_requests if r.job_name != "daily_report_job"])
    fail(r for r in first.run_requests if r.job_name == "daily_report_job")
    again = pipeline.tick(first.cursor)
    assert _asked(again) == [("daily_report_job", "2026-11-12"), ("daily_report_job", "2026-11-13")]
    assert all(r.run_key.endswith(":again") for r in again.run_requests)
    fail(again.run_requests)
    assert _asked(pipeline.tick(again.cursor)) == [
        ("monthly_report_job", "2026-11-01"),
        ("weekly_report_job", MONDAY.isoformat()),
    ]


def test_a_rebuild_waits_for_the_runs_still_writing_its_days(built_week):
    """A backfill of the week under way: the week is built once after its days, not once
    after each day as it lands."""
    pipeline = built_week
    backfill = DagsterRun(
        job_name="ingestion_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
        tags=range_tags(LATE + timedelta(days=1), WEEK[-1]),
    )  # fmt: skip
    pipeline.instance.add_run(backfill)
    pipeline.rows = _rows(conversations_on_late_day=15)
    pipeline.build([*UPSTREAM, tables.DAILY_REPORT], partition_key=LATE.isoformat())
    waiting = pipeline.tick(pipeline.cursor)
    assert waiting.run_requests == []
    assert LATE.isoformat() in waiting.skip_reason.skip_message
    pipeline.instance.report_run_canceled(backfill)
    after = pipeline.tick(waiting.cursor)
    assert ("users_and_report_job", "2026-11-12") in _asked(after)


def test_a_week_never_built_is_left_to_its_schedule(tmp_path):
    pipeline = _Pipeline(tmp_path)
    pipeline.rows = _rows(conversations_on_late_day=10)
    pipeline.build([*UPSTREAM, tables.DAILY_REPORT], tags=range_tags(WEEK[0], WEEK[-1]))
    cursor = pipeline.tick().cursor
    pipeline.rows = _rows(conversations_on_late_day=15)
    pipeline.build([*UPSTREAM, tables.DAILY_REPORT], partition_key=LATE.isoformat())
    first = pipeline.tick(cursor)
    assert {job for job, _ in _asked(first)} == {"users_and_report_job"}
    pipeline.run(first.run_requests)
    assert _asked(pipeline.tick(first.cursor)) == []


def test_from_cron_each_request_runs_its_own_job(built_week, tmp_path):
    """`analytics-assets sensor-tick reports_after_a_day_changed_sensor`: the sensor asks
    for three jobs, and the cron tick ran every request with the sensor's one job."""
    from dagster import Definitions

    from analytics_assets.defs.analytics.jobs import REPORT_JOBS
    from analytics_assets.defs.sensor_ticks import tick

    pipeline = built_week
    defs = Definitions(
        assets=pipeline.assets,
        jobs=list(REPORT_JOBS.values()),
        sensors=[reports_after_a_day_changed],
        resources=pipeline.resources,
    )
    cursor_file = tmp_path / "cursors" / "reports.json"
    tick(defs, pipeline.instance, reports_after_a_day_changed.name, cursor_file)
    pipeline.rows = _rows(conversations_on_late_day=15)
    pipeline.build([*UPSTREAM, tables.DAILY_REPORT], partition_key=LATE.isoformat())
    days = tick(defs, pipeline.instance, reports_after_a_day_changed.name, cursor_file)
    periods = tick(defs, pipeline.instance, reports_after_a_day_changed.name, cursor_file)
    assert days.ran == ["2026-11-12", "2026-11-13", "2026-11-14", "2026-11-15"]
    assert periods.ran == ["2026-11-01", "2026-11-15", MONDAY.isoformat()]
    assert not periods.failed
    [week] = pipeline.read(tables.WEEKLY_REPORT).to_dicts()
    assert week["conversations"] == 75
