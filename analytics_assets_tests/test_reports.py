"""Daily, weekly and monthly reports on the sample: a week is exactly the sum of its days."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest
from dagster import DagsterInstance

from analytics_assets.analytics.reports import REPORT_SCHEMA, daily_report
from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion.resources import ExportSourceResource
from analytics_assets.defs.lake.io_manager import ParquetLakeIOManager
from analytics_assets.deployments import storage_resources
from analytics_assets_tests.conftest import range_tags
from analytics_assets_tests.test_assets import read_asset

WEEK = [date(2026, 11, 2) + timedelta(days=n) for n in range(7)]
ADDITIVE = (
    "conversations", "messages", "users", "prompt_tokens", "completion_tokens", "total_tokens",
    "errors", "quality_count", "satisfaction_count", "latency_count",
)  # fmt: skip


@pytest.fixture(scope="module")
def materialized(tmp_path_factory, mongo_server):
    from analytics_assets.defs.storage.resources import MongoResource

    root = tmp_path_factory.mktemp("reports")
    lake = ParquetLakeIOManager(base_url=str(root / "lake"))
    mongo = MongoResource(uri=mongo_server, database="reports_test")
    defs = build_definitions(
        resources={
            "record_source": ExportSourceResource(
                export_dir=str(root / "export"), generate_sample_if_missing=True
            ),
            **storage_resources({"base_url": lake.base_url}, mongo),
        }
    )
    instance = DagsterInstance.ephemeral()
    checks = {}
    for first, last in ((WEEK[0], WEEK[-1]), (date(2026, 11, 20), date(2026, 11, 20))):
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=instance, tags=range_tags(first, last)
        )
        assert result.success
        checks.update({e.check_name: e for e in result.get_asset_check_evaluations()})
    weekly = defs.resolve_job_def("weekly_report_job").execute_in_process(
        instance=instance, partition_key="2026-11-02"
    )
    assert weekly.success
    # A month before the sample: no day of it exists, the report is empty but valid.
    monthly = defs.resolve_job_def("monthly_report_job").execute_in_process(
        instance=instance, partition_key="2026-10-01"
    )
    assert monthly.success
    checks.update({e.check_name: e for e in weekly.get_asset_check_evaluations()})
    return lake, mongo, checks


def test_a_week_equals_the_aggregation_of_its_days(materialized):
    lake, mongo, _ = materialized
    days = read_asset(lake, "daily_report").filter(pl.col("day").is_in(WEEK))
    assert days.height == 7
    week = read_asset(lake, "weekly_report").row(0, named=True)
    assert (week["kind"], week["period"]) == ("weekly", "2026-11-02")
    for name in ("conversations", "messages", "prompt_tokens", "total_tokens", "errors"):
        assert week[name] == days[name].sum(), name
    assert week["users"] == len(set(days["user_ids"].explode().drop_nulls()))
    assert week["quality_sum"] == pytest.approx(days["quality_sum"].sum())
    topic_totals = days.select(pl.col("topics").explode()).unnest("topics")
    expected = dict(topic_totals.group_by("value").agg(pl.col("count").sum()).iter_rows())
    assert {t["value"]: t["count"] for t in week["topics"]} == expected

    # And the same as one report over all the week's conversations at once.
    analytics = read_asset(lake, "conversation_analytics").filter(pl.col("day").is_in(WEEK))
    messages = read_asset(lake, "conversation_messages").filter(pl.col("day").is_in(WEEK))
    errors = read_asset(lake, "processing_errors").filter(pl.col("day").is_in(WEEK))
    direct = daily_report(WEEK[0], analytics, messages, errors).row(0, named=True)
    for name in ADDITIVE:
        assert week[name] == direct[name], name
    assert week["quality_mean"] == pytest.approx(direct["quality_mean"])
    assert week["per_model"] == direct["per_model"] or [m["model"] for m in week["per_model"]] == [
        m["model"] for m in direct["per_model"]
    ]

    stored = mongo.db()["analytics_reports"]
    assert stored.count_documents({"kind": "daily"}) == 8
    assert stored.find_one({"_id": "weekly:2026-11-02"})["conversations"] == week["conversations"]


def test_a_day_without_conversations_is_an_empty_but_valid_report(materialized):
    lake, _, _ = materialized
    quiet = read_asset(lake, "daily_report").filter(pl.col("day") == date(2026, 11, 20))
    assert quiet.schema == pl.Schema(REPORT_SCHEMA)
    row = quiet.row(0, named=True)
    assert (row["conversations"], row["messages"], row["users"]) == (0, 0, 0)
    assert row["quality_mean"] is None and row["topics"] == []


def test_the_checks_run_with_the_jobs_and_pass_on_the_sample(materialized):
    _, _, checks = materialized
    assert {
        "message_ids_unique_and_present",
        "conversation_ids_unique_and_present",
        "error_rate_below_threshold",
        "message_volume_within_trailing_range",
        "topic_distribution_stable",
        "weekly_report_reconciles",
    } <= set(checks)
    # The sample ends on 2026-11-14: yesterday's report is missing, and freshness says so.
    freshness = checks.pop("freshness_check")
    assert not freshness.passed
    assert freshness.severity.value == "WARN"
    assert all(check.passed for check in checks.values()), {
        name: check.metadata for name, check in checks.items() if not check.passed
    }


def test_a_month_without_days_is_an_empty_but_valid_report(materialized):
    lake, _, _ = materialized
    month = read_asset(lake, "monthly_report")
    assert month.schema == pl.Schema(REPORT_SCHEMA)
    row = month.row(0, named=True)
    assert (row["kind"], row["period"], row["conversations"], row["users"]) == (
        "monthly", "2026-10", 0, 0,
    )  # fmt: skip
