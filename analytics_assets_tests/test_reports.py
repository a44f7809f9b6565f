"""Daily, weekly and monthly reports on the sample: a week is exactly the sum of its days."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from dagster import DagsterInstance

from analytics_assets.analytics.reports import REPORT_SCHEMA, daily_report
from analytics_assets.transforms.records import is_lost
from analytics_assets_tests.conftest import range_tags, sample_definitions
from analytics_assets_tests.test_assets import read_asset

SAMPLE_DAYS = [date(2026, 11, 1) + timedelta(days=n) for n in range(14)]
WEEK = SAMPLE_DAYS[1:8]
QUIET_DAY = date(2026, 11, 15)  # the day after the sample: no conversations
ADDITIVE = (
    "conversations", "messages", "users", "prompt_tokens", "completion_tokens", "total_tokens",
    "errors", "quality_count", "satisfaction_count", "latency_count",
)  # fmt: skip


@pytest.fixture(scope="module")
def materialized(tmp_path_factory, mongo_server):
    defs, lake, mongo = sample_definitions(
        tmp_path_factory.mktemp("reports"), mongo_server, "reports_test"
    )
    instance = DagsterInstance.ephemeral()
    # (check, run label) -> its evaluations: a daily check is recorded once per day of a run.
    checks: dict[tuple[str, str], list] = {}

    def record(label: str, evaluations) -> None:
        for evaluation in evaluations:
            checks.setdefault((evaluation.check_name, label), []).append(evaluation)

    # The sample's 14 days in one single-run backfill, then a quiet day with no conversations
    # in a run of its own (its checks look back at the sample's days in the lake).
    for label, first, last in (
        ("sample", SAMPLE_DAYS[0], SAMPLE_DAYS[-1]),
        ("quiet", QUIET_DAY, QUIET_DAY),
    ):
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=instance, tags=range_tags(first, last)
        )
        assert result.success
        record(label, result.get_asset_check_evaluations())
    for week in ("2026-11-02", "2026-11-09"):
        weekly = defs.resolve_job_def("weekly_report_job").execute_in_process(
            instance=instance, partition_key=week
        )
        assert weekly.success
        record(week, weekly.get_asset_check_evaluations())
    # November (the sample and the quiet day), and October: no day of it exists, so the
    # report is empty but valid.
    for month in ("2026-11-01", "2026-10-01"):
        monthly = defs.resolve_job_def("monthly_report_job").execute_in_process(
            instance=instance, partition_key=month
        )
        assert monthly.success
        record(month, monthly.get_asset_check_evaluations())
    return lake, mongo, checks


def test_a_week_equals_the_aggregation_of_its_days(materialized):
    lake, mongo, _ = materialized
    days = read_asset(lake, "daily_report").filter(pl.col("day").is_in(WEEK))
    assert days.height == 7
    week = (
        read_asset(lake, "weekly_report")
        .filter(pl.col("period") == "2026-11-02")
        .row(0, named=True)
    )
    assert (week["kind"], week["period"]) == ("weekly", "2026-11-02")
    for name in ("conversations", "messages", "prompt_tokens", "total_tokens", "errors"):
        assert week[name] == days[name].sum(), name
    assert week["users"] == len(set(days["user_ids"].explode().drop_nulls()))
    assert week["quality_sum"] == pytest.approx(days["quality_sum"].sum())
    topic_totals = days.select(pl.col("topics").explode()).unnest("topics")
    expected = dict(topic_totals.group_by("value").agg(pl.col("count").sum()).iter_rows())
    assert {t["value"]: t["count"] for t in week["topics"]} == expected

    # New users of the week: those new on one of its days; the rest are returning.
    assert week["new_user_ids"] == sorted(set(days["new_user_ids"].explode().drop_nulls()))
    assert week["new_users"] + week["returning_users"] == week["users"]

    # And the same as one report over all the week's conversations at once.
    analytics = read_asset(lake, "conversation_analytics").filter(pl.col("day").is_in(WEEK))
    messages = read_asset(lake, "conversation_messages").filter(pl.col("day").is_in(WEEK))
    errors = read_asset(lake, "processing_errors").filter(
        pl.col("day").is_in(WEEK) & is_lost(pl.col("reason"))
    )
    direct = daily_report(
        WEEK[0], analytics, messages=messages.height, errors=errors.height,
        new_user_ids=week["new_user_ids"],
    ).row(0, named=True)  # fmt: skip
    for name in (*ADDITIVE, "quality_histogram", "satisfaction_histogram", "new_users"):
        assert week[name] == direct[name], name
    assert week["quality_mean"] == pytest.approx(direct["quality_mean"])
    assert [m["model"] for m in week["per_model"]] == [m["model"] for m in direct["per_model"]]
    for from_days, at_once in zip(week["per_model"], direct["per_model"], strict=True):
        assert from_days == pytest.approx(at_once)
    assert [(c["model"], c["metric"]) for c in week["model_comparison"]] == [
        (c["model"], c["metric"]) for c in direct["model_comparison"]
    ]

    stored = mongo.db()["analytics_reports"]
    assert stored.count_documents({"kind": "daily"}) == 15
    assert stored.find_one({"_id": "weekly:2026-11-02"})["conversations"] == week["conversations"]


def test_a_day_without_conversations_is_an_empty_but_valid_report(materialized):
    lake, _, _ = materialized
    quiet = read_asset(lake, "daily_report").filter(pl.col("day") == QUIET_DAY)
    assert quiet.schema == pl.Schema(REPORT_SCHEMA)
    row = quiet.row(0, named=True)
    assert (row["conversations"], row["messages"], row["users"]) == (0, 0, 0)
    assert row["quality_mean"] is None and row["topics"] == []


def test_the_checks_run_with_the_jobs_and_pass_on_the_sample(materialized):
    _, _, checks = materialized
    assert {
        ("message_ids_unique_and_present", "sample"),
        ("conversation_ids_unique_and_present", "sample"),
        ("error_rate_below_threshold", "sample"),
        ("optional_values_mostly_valid", "sample"),
        ("message_volume_within_trailing_range", "sample"),
        ("topic_distribution_stable", "sample"),
        ("weekly_report_reconciles", "2026-11-02"),
        ("weekly_report_reconciles", "2026-11-09"),
        ("monthly_report_reconciles", "2026-11-01"),
        ("monthly_report_reconciles", "2026-10-01"),
    } <= set(checks)
    sample = {key: found for key, found in checks.items() if key[1] != "quiet"}
    # The sample's data ends on 2026-11-14 and that day's report exists: fresh.
    [freshness] = sample.pop(("freshness_check", "sample"))
    assert freshness.passed, freshness.description
    assert freshness.metadata["expected_partition"].value == "2026-11-14"
    failed = {key: [e.metadata for e in found if not e.passed] for key, found in sample.items()}
    assert not any(failed.values()), failed
    # Every day of the 14-day run has its own verdict; the last day is judged against the 7
    # days before it.
    volume = {e.partition: e for e in checks[("message_volume_within_trailing_range", "sample")]}
    assert sorted(volume) == [day.isoformat() for day in SAMPLE_DAYS]
    assert volume["2026-11-14"].metadata["history_days"].value == 7


def test_a_quiet_day_on_its_own_trips_the_volume_check_against_the_lake_history(materialized):
    _, _, checks = materialized
    [volume] = checks[("message_volume_within_trailing_range", "quiet")]
    assert not volume.passed and volume.severity.value == "WARN"
    assert volume.partition == QUIET_DAY.isoformat()
    seen = {name: volume.metadata[name].value for name in ("today", "history_days", "ratio")}
    assert seen == {"today": 0, "history_days": 7, "ratio": 0.0}
    assert all(e.passed for e in checks[("error_rate_below_threshold", "quiet")])
    # No conversations: nothing to call drift.
    assert all(e.passed for e in checks[("topic_distribution_stable", "quiet")])


def test_a_month_equals_its_days_and_a_month_without_days_is_empty_but_valid(materialized):
    lake, mongo, _ = materialized
    months = read_asset(lake, "monthly_report")
    assert months.schema == pl.Schema(REPORT_SCHEMA)
    november = months.filter(pl.col("period") == "2026-11").row(0, named=True)
    days = read_asset(lake, "daily_report").filter(pl.col("day").dt.month() == 11)
    assert days.height == 15  # the 14 sample days and the quiet day
    for name in ("conversations", "messages", "total_tokens", "errors", "quality_count"):
        assert november[name] == days[name].sum(), name
    assert november["users"] == len(set(days["user_ids"].explode().drop_nulls()))
    # Every user of the sample's first month is new to it: nothing before November.
    assert november["new_users"] == november["users"]
    october = months.filter(pl.col("period") == "2026-10").row(0, named=True)
    assert (october["conversations"], october["users"], october["topics"]) == (0, 0, [])
    assert november["previous_period"] is None  # October had no conversations to compare
    assert (
        mongo.db()["analytics_reports"].find_one({"_id": "monthly:2026-11"})["messages"]
        == (november["messages"])
    )


def test_each_period_reports_its_change_since_the_one_before(materialized):
    lake, _, _ = materialized
    days = read_asset(lake, "daily_report")
    before, after = (days.filter(pl.col("day") == d).row(0, named=True) for d in SAMPLE_DAYS[:2])
    assert after["previous_period"] == before["period"]
    previous_topics = {c["value"]: c["previous_count"] for c in after["changes"]
                       if c["dimension"] == "topics"}  # fmt: skip
    assert previous_topics == {t["value"]: t["count"] for t in before["topics"]}
    volume = {c["value"]: c for c in after["changes"] if c["dimension"] == "volume"}
    assert volume["messages"]["previous_count"] == before["messages"]
    assert before["previous_period"] is None  # nothing before the sample's first day

    weeks = read_asset(lake, "weekly_report").sort("period")
    first, second = weeks.iter_rows(named=True)
    assert second["previous_period"] == first["period"] == "2026-11-02"
    # The week before the first holds one sample day of seven: no change against a gap.
    assert first["previous_period"] is None and first["changes"] == []
    shares = {c["value"]: c for c in second["changes"] if c["dimension"] == "languages"}
    for language in first["languages"]:
        assert shares[language["value"]]["previous_count"] == language["count"]
    # The sample's days are alike by construction: returning users dominate the second week,
    # and no topic rises significantly.
    assert second["returning_users"] > second["new_users"]
    assert second["rising_topics"] == []


def test_a_score_on_a_bin_edge_lands_in_the_bin_it_opens():
    """0.4 computed as 0.39999999999999997 (thumbs 1 of 5 with weight 2, no escalation and
    no change of sentiment) landed in [0.3, 0.4)."""
    from analytics_assets.analytics.reports import _histogram

    just_under = (2 * 0.2 + 1.0 * 1 + 0.5 * 0.5 - 0.25) / 3.5  # 0.39999999999999997
    assert just_under < 0.4
    assert _histogram(pl.Series([just_under, 1.0, 0.0])) == [1, 0, 0, 0, 1, 0, 0, 0, 0, 1]


def _analytics_of(headers: pl.DataFrame, schema: dict) -> pl.DataFrame:
    """A conversation_analytics row per header: its day, id, a user and a model, nothing
    measured."""
    blank = {name: None for name in schema}
    rows = [
        blank | {"day": day, "conversation_id": conversation, "user_id": "u", "model": "m",
                 "feedback_up": 0, "feedback_down": 0, "prompt_tokens": 0,
                 "completion_tokens": 0, "total_tokens": 0,
                 "categorized_via_translation": False}
        for day, conversation in headers.select("day", "conversation_id").iter_rows()
    ]  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def _daily_report_of(tmp_path, day: date, messages: pl.DataFrame, headers, errors) -> dict:
    """`daily_report` materialized for `day` alone, as the daily schedule runs it, over
    upstream days written first by stand-ins of its inputs (the lake IO manager reads them
    back, with its partition mappings)."""
    from dagster import BackfillPolicy, asset, materialize

    from analytics_assets.analytics.scores import ANALYTICS_SCHEMA
    from analytics_assets.analytics.users import USER_SCHEMA
    from analytics_assets.defs.analytics.assets import daily_report as daily_report_asset
    from analytics_assets.defs.partitions import daily_partitions, days_in
    from analytics_assets.defs.storage.lake import LakeResource, ParquetLakeIOManager
    from analytics_assets.storage.placement import LAKE_AND_MONGO_IO_MANAGER

    upstream = {"partitions_def": daily_partitions, "io_manager_key": "lake_io_manager",
                "backfill_policy": BackfillPolicy.single_run()}  # fmt: skip

    def of_run(frame: pl.DataFrame):
        def days_of(context) -> pl.DataFrame:
            return frame.filter(pl.col("day").is_in(days_in(context.partition_time_window)))

        return days_of

    stand_ins = [
        asset(name=name, **upstream)(of_run(frame))
        for name, frame in (
            ("conversation_messages", messages),
            ("conversation_headers", headers),
            ("processing_errors", errors),
            ("conversation_analytics", _analytics_of(headers, ANALYTICS_SCHEMA)),
            ("user_analytics", pl.DataFrame(schema=USER_SCHEMA)),
        )
    ]
    lake_io = ParquetLakeIOManager(base_url=str(tmp_path))
    resources = {"lake_io_manager": lake_io, LAKE_AND_MONGO_IO_MANAGER: lake_io,
                 "lake": LakeResource(base_url=str(tmp_path))}  # fmt: skip
    instance = DagsterInstance.ephemeral()
    first = messages["day"].min()
    assert materialize(
        stand_ins, resources=resources, instance=instance, tags=range_tags(first, day)
    ).success
    result = materialize(
        [*stand_ins, daily_report_asset],
        selection=["daily_report"],
        resources=resources,
        instance=instance,
        partition_key=day.isoformat(),
    )
    assert result.success
    return result.output_for_node("daily_report").row(0, named=True)


def test_the_change_in_messages_compares_with_the_day_befores_own_count(tmp_path):
    """m1 was sent on D-2 and NocoDB holds it again on D-1: D-1's own report counts one
    message (m2). A daily run of D rebuilt D-1's count from D-1 alone, counted m1 again and
    said messages fell by half when they had not moved."""
    d2, d1, d = date(2026, 11, 8), date(2026, 11, 9), date(2026, 11, 10)
    messages = pl.DataFrame(
        {"day": [d2, d1, d1, d], "conversation_id": ["c0", "c0", "c1", "c2"],
         "message_id": ["m1", "m1", "m2", "m3"]}
    )  # fmt: skip
    headers = pl.DataFrame({"day": [d2, d1, d], "conversation_id": ["c0", "c1", "c2"]})
    errors = pl.DataFrame(schema={"day": pl.Date(), "reason": pl.String()})
    report = _daily_report_of(tmp_path, d, messages, headers, errors)
    [change] = [
        c for c in report["changes"] if c["dimension"] == "volume" and c["value"] == "messages"
    ]
    assert (report["messages"], change["previous_count"], change["count_change"]) == (1, 1, 0.0)


def test_the_reports_rejected_share_is_the_error_rate_checks_share(tmp_path):
    """The day received 100 messages (10 of them held the day before too) and 1 header, and
    rejected 2: 2 of 103 records, under 2 %, as error_rate_below_threshold judges it. The
    report left the 10 copies out of the records, said 2.15 % and called itself incomplete."""
    d1, d = date(2026, 11, 9), date(2026, 11, 10)
    ids = [f"m{n}" for n in range(100)]
    messages = pl.DataFrame(
        {"day": [d1] * 10 + [d] * 100, "conversation_id": "c", "message_id": ids[:10] + ids}
    )
    headers = pl.DataFrame({"day": [d1, d], "conversation_id": ["c", "d"]})
    errors = pl.DataFrame({"day": [d, d], "reason": ["invalid role 'x'", "missing content"]})
    report = _daily_report_of(tmp_path, d, messages, headers, errors)
    assert report["complete"], report["missing_inputs"]
