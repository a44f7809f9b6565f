"""Issue 19: each day materialized by a multi-day run (one step, many partitions) carries its
own numbers, its checks are recorded day by day, and a clean run logs no warning."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from dagster import AssetCheckKey, AssetKey, DagsterInstance

from analytics_assets.analytics.freshness import report_day_due
from analytics_assets.defs.ingestion.resources import RecordSourceResource
from analytics_assets.defs.partitions import daily_partitions
from analytics_assets.transforms.records import is_kept_without_values, is_lost, is_superseded
from analytics_assets_tests.conftest import range_tags, sample_definitions
from analytics_assets_tests.test_assets import read_asset

# Three days in the middle of the sample, as one run.
DAYS = [date(2026, 11, 9) + timedelta(days=n) for n in range(3)]


@pytest.fixture(scope="module")
def three_day_run(tmp_path_factory, mongo_server):
    defs, lake, _ = sample_definitions(
        tmp_path_factory.mktemp("day_metadata"), mongo_server, "day_metadata_test"
    )
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=instance, tags=range_tags(DAYS[0], DAYS[-1])
    )
    assert result.success
    return instance, result, lake


def materializations(result, asset: str) -> dict[str, dict]:
    """Each partition's metadata; a second materialization of a day fails the test."""
    by_day: dict[str, dict] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key == AssetKey(asset):
            assert materialization.partition not in by_day, (asset, materialization.partition)
            by_day[materialization.partition] = {
                name: getattr(value, "value", value)
                for name, value in materialization.metadata.items()
            }
    assert sorted(by_day) == [day.isoformat() for day in DAYS], asset
    return by_day


def of_day(frame: pl.DataFrame, day: date) -> pl.DataFrame:
    return frame.filter(pl.col("day") == day)


def test_per_day_metadata_of_a_3_day_run_equals_each_days_own_report(three_day_run):
    _, result, lake = three_day_run
    reports = read_asset(lake, "daily_report")
    messages = read_asset(lake, "conversation_messages")
    conversations = read_asset(lake, "conversations")
    analytics = read_asset(lake, "conversation_analytics")
    errors = read_asset(lake, "processing_errors")
    users = read_asset(lake, "user_analytics")
    report_metadata = materializations(result, "daily_report")
    message_metadata = materializations(result, "conversation_messages")
    conversation_metadata = materializations(result, "conversations")
    analytics_metadata = materializations(result, "conversation_analytics")
    error_metadata = materializations(result, "processing_errors")
    header_metadata = materializations(result, "conversation_headers")
    user_metadata = materializations(result, "user_analytics")
    for day in DAYS:
        key = day.isoformat()
        report = of_day(reports, day).row(0, named=True)
        shown = report_metadata[key]
        for name in ("conversations", "messages", "users", "new_users", "errors"):
            assert shown[name] == report[name], (key, name)
        assert shown["quality_mean"] == round(report["quality_mean"], 4)
        assert shown["satisfaction_mean"] == round(report["satisfaction_mean"], 4)
        # The summary is that day's report, not a table of the run's days.
        assert f"Daily report {key}" in shown["summary"]
        assert not any(other.isoformat() in shown["summary"] for other in DAYS if other > day)

        day_messages = of_day(messages, day).height
        message_errors = of_day(errors, day).filter(pl.col("table") == "messages")
        kept = message_errors.filter(is_kept_without_values(pl.col("reason"))).height
        assert message_metadata[key]["messages"] == day_messages
        assert message_metadata[key]["dagster/row_count"] == day_messages
        # A message kept with a wrong value left empty is among the messages, not rejected.
        assert message_metadata[key]["rejected"] == message_errors.height - kept
        assert message_metadata[key]["kept_without_values"] == kept
        # Older copies of a kept message are rejected rows, but lost nothing: not in the share.
        lost = message_errors.filter(is_lost(pl.col("reason"))).height
        assert message_metadata[key]["error_rate"] == round(lost / (day_messages + lost), 5)

        day_conversations = of_day(conversations, day)
        assert conversation_metadata[key]["conversations"] == day_conversations.height
        assert conversation_metadata[key]["conversations"] == report["conversations"]
        assert conversation_metadata[key]["users"] == day_conversations["user_id"].n_unique()
        assert conversation_metadata[key]["users"] == report["users"]

        day_analytics = of_day(analytics, day)
        assert analytics_metadata[key]["quality_mean"] == round(
            day_analytics["quality_score"].mean(), 4
        )
        assert analytics_metadata[key]["quality_mean"] == pytest.approx(
            report["quality_mean"], abs=1e-4
        )
        assert analytics_metadata[key]["satisfaction_mean"] == pytest.approx(
            report["satisfaction_mean"], abs=1e-4
        )
        assert error_metadata[key]["errors"] == of_day(errors, day).height
        # A first build: each of the day's errors is new, none recovered (a 14-day run gave
        # every day the run's count of new errors).
        assert error_metadata[key]["new_errors"] == of_day(errors, day).height
        assert error_metadata[key]["recovered"] == error_metadata[key]["still_failing"] == 0
        header_errors = of_day(errors, day).filter(pl.col("table") == "conversations")
        kept_headers = header_errors.filter(is_kept_without_values(pl.col("reason"))).height
        assert header_metadata[key]["rejected"] == header_errors.height - kept_headers
        assert header_metadata[key]["kept_without_values"] == kept_headers
        copies = of_day(errors, day).filter(is_superseded(pl.col("reason"))).height
        assert error_metadata[key]["superseded_copies"] == copies
        assert error_metadata[key]["kept_without_values"] == kept + kept_headers
        # The report's rejected records leave out the older copies of kept records and the
        # records kept without a value.
        assert report["errors"] == of_day(errors, day).height - copies - kept - kept_headers
        assert user_metadata[key]["users"] == of_day(users, day).height
    # The sample's re-delivered records and wrong values are there, so the shares above
    # leave something out.
    assert any(error_metadata[day.isoformat()]["superseded_copies"] for day in DAYS)
    assert any(error_metadata[day.isoformat()]["kept_without_values"] for day in DAYS)
    # The days differ, so flat lines of run totals would show here.
    assert len({report_metadata[day.isoformat()]["conversations"] for day in DAYS}) > 1
    assert len({error_metadata[day.isoformat()]["new_errors"] for day in DAYS}) > 1
    # Run-level figures say so, and are the same on every day of the run.
    for metadata in (
        report_metadata,
        message_metadata,
        conversation_metadata,
        header_metadata,
        error_metadata,
    ):
        run_level = [
            {name: value for name, value in day.items() if name.startswith("run/")}
            for day in metadata.values()
        ]
        assert run_level[0]["run/days"] == 3 and all(r == run_level[0] for r in run_level)
        assert not any("conversations_in_run" in m for m in metadata.values())


def test_translations_and_languages_report_each_day_of_the_run(three_day_run):
    """The translation step and conversation_languages gave every day of a range run the
    run's outcomes and language counts."""
    _, result, lake = three_day_run
    signals = read_asset(lake, "message_signals")
    languages = read_asset(lake, "conversation_languages")
    translation_metadata = materializations(result, "conversation_translations")
    error_metadata = materializations(result, "translation_errors")
    language_metadata = materializations(result, "conversation_languages")
    needing = []
    for day in DAYS:
        key = day.isoformat()
        # The sample runs detect-only (no translator): each day counts its own user messages
        # a translator would have had to translate (not English, not unknown).
        day_needing = (
            of_day(signals, day).filter(~pl.col("language").is_in(["en", "unknown"])).height
        )
        shown = translation_metadata[key]
        assert shown["outcomes"] == {"user_messages_needing_translation_no_translator": day_needing}
        assert shown["translated"] == shown["failed"] == shown["dagster/row_count"] == 0
        assert error_metadata[key]["dagster/row_count"] == 0
        needing.append(day_needing)
        day_languages = of_day(languages, day)
        assert language_metadata[key]["languages"] == dict(
            day_languages.group_by("dominant_language").len().sort("len").iter_rows()
        )
        assert language_metadata[key]["dagster/row_count"] == day_languages.height
        assert language_metadata[key]["mixed_language"] == day_languages["mixed_language"].sum()
    assert len(set(needing)) > 1 and all(needing)
    for metadata in (translation_metadata, language_metadata):
        assert all(day["run/days"] == 3 for day in metadata.values())


def test_each_day_of_the_run_records_its_checks_results(three_day_run):
    instance, result, _ = three_day_run
    keys = [
        AssetCheckKey(AssetKey("conversation_messages"), name)
        for name in (
            "message_ids_unique_and_present",
            "message_volume_within_trailing_range",
            "no_raw_pii",
        )
    ]
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_check_key in keys]
    assert sorted((e.check_name, e.partition) for e in evaluations) == sorted(
        (key.name, day.isoformat()) for key in keys for day in DAYS
    )
    # What the UI's checks list shows: every day of the run passed, none planned or skipped.
    states = instance.event_log_storage.get_asset_check_state(
        [(key, daily_partitions) for key in keys]
    )
    for key, state in states.items():
        shown = {
            status.value: sorted(subset.value.get_partition_keys())
            for status, subset in state.subsets.items()
            if not subset.is_empty
        }
        assert shown == {"SUCCEEDED": [day.isoformat() for day in DAYS]}, key.name
    # The check's latest execution, which the asset's checks list shows, is a day's result.
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    for key in keys:
        assert latest[key].status.value == "SUCCEEDED", key.name
        assert latest[key].partition in {day.isoformat() for day in DAYS}


def test_a_clean_run_logs_no_warning(three_day_run):
    """Days the inputs read but the lake lacks (the day after the run) are expected."""
    instance, result, _ = three_day_run
    warnings = [
        entry.user_message
        for entry in instance.all_logs(result.run_id)
        if entry.level >= logging.WARNING
    ]
    assert warnings == []


def test_freshness_fails_where_reports_stop_before_the_data_or_a_live_source_moves_on(
    three_day_run, tmp_path, mongo_server
):
    instance, result, _ = three_day_run
    # The sample export ends on 2026-11-14: a deployment whose reports stop on the 11th is
    # stale.
    [stale] = [e for e in result.get_asset_check_evaluations() if e.check_name == "freshness_check"]
    assert not stale.passed and stale.severity.value == "WARN"
    assert stale.metadata["expected_partition"].value == "2026-11-14"
    # A live source (no end to its data) owes yesterday's report, which nothing built.
    live, _, _ = sample_definitions(
        tmp_path, mongo_server, "day_metadata_live", record_source=RecordSourceResource()
    )
    freshness = AssetCheckKey(AssetKey("daily_report"), "freshness_check")
    only_the_check = live.resolve_job_def("ingestion_job").get_subset(
        asset_check_selection={freshness}, asset_selection=set()
    )
    [evaluation] = only_the_check.execute_in_process(
        instance=instance
    ).get_asset_check_evaluations()
    assert not evaluation.passed
    assert (
        evaluation.metadata["expected_partition"].value
        == report_day_due(datetime.now(UTC)).isoformat()
    )
    assert evaluation.metadata["data_end"].value == "none (live source)"
