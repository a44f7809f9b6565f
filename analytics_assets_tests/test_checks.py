"""Each check's arithmetic trips on a fixture built to trip it and passes on clean data."""

from __future__ import annotations

import math
from datetime import date, timedelta

import polars as pl
import pytest
from dagster import AssetKey

from analytics_assets.analytics.checks import (
    drift_verdict,
    error_rate_verdict,
    population_stability_index,
    reconciliation_verdict,
    values_left_empty_verdict,
    volume_verdict,
)
from analytics_assets.analytics.reports import combine, daily_report
from analytics_assets_tests.test_report_parts import analytics

USUAL = {"billing": 30, "pricing": 25, "bug": 25, "other": 20}


def test_psi_is_zero_for_the_same_distribution_and_known_for_a_shift():
    assert population_stability_index(USUAL, USUAL) == pytest.approx(0.0)
    shifted = {"billing": 70, "pricing": 10, "bug": 10, "other": 10}
    expected = sum(
        (p - q) * math.log(p / q) for p, q in ((0.7, 0.3), (0.1, 0.25), (0.1, 0.25), (0.1, 0.2))
    )
    assert population_stability_index(shifted, USUAL) == pytest.approx(expected)


def test_drift_trips_on_a_new_dominant_topic_and_passes_on_noise():
    history = [USUAL] * 7
    assert drift_verdict({"billing": 29, "pricing": 26, "bug": 24, "other": 21}, history).passed
    tripped = drift_verdict({"outage": 80, "billing": 20}, history)
    assert not tripped.passed and tripped.metadata["psi"] > 0.25
    assert drift_verdict({"outage": 80}, history[:2]).passed  # too little history: says so


def test_volume_trips_outside_half_to_double_the_trailing_median():
    history = [1000, 1100, 900, 1050, 950]
    assert volume_verdict(1020, history).passed
    low = volume_verdict(300, history)
    assert not low.passed and low.metadata["ratio"] == 0.3
    assert not volume_verdict(2500, history).passed
    assert volume_verdict(0, [5]).passed


def test_volume_stays_red_through_an_outage_and_compares_with_days_that_had_records():
    """Empty days counted in the median made it 0 on the fifth day of an outage, and the
    check went green (ratio 1.0); the first day back read ratio `inf`, invalid JSON."""
    week = [1000, 1100, 900, 1050, 950, 1000, 1020]
    for day in range(1, 7):
        history = (week + [0] * day)[-7:]
        assert not volume_verdict(0, history).passed, day
    # A whole window without records: nothing left to compare with.
    assert volume_verdict(0, [0] * 7).metadata["note"] == "not enough to compare"
    back = volume_verdict(980, [0, 0, 0, 0, 1000, 1100, 900])
    assert back.passed and back.metadata["ratio"] == 0.98 and back.metadata["empty_days"] == 4
    # Only empty days behind: nothing to compare with (a new source), never `inf`.
    fresh = volume_verdict(500, [0] * 7)
    assert fresh.passed and fresh.metadata["note"] == "not enough to compare"


def test_error_rate_trips_above_two_percent():
    assert error_rate_verdict(2, 998).passed
    tripped = error_rate_verdict(30, 970)
    assert not tripped.passed and tripped.metadata["error_rate"] == 0.03
    assert error_rate_verdict(0, 0).passed


def test_older_copies_of_a_record_are_shown_not_counted_as_lost():
    """3 of 100 messages delivered twice by NocoDB: the newest copies were kept, nothing was
    lost, and the blocking check failed the day at 2.9 %."""
    from analytics_assets.transforms.records import is_superseded, validate_messages
    from analytics_assets_tests.test_transforms import message, raw

    copies = [message(n, message_id=f"m-{n % 100}") for n in range(103)]
    validated = validate_messages(raw("messages", copies))
    assert (validated.valid.height, validated.rejected.height) == (100, 3)
    superseded = validated.rejected.filter(is_superseded(pl.col("reason"))).height
    assert superseded == 3
    lost = validated.rejected.height - superseded
    verdict = error_rate_verdict(lost, validated.valid.height, superseded)
    assert verdict.passed and verdict.metadata["superseded_copies"] == 3
    assert not error_rate_verdict(validated.rejected.height, validated.valid.height).passed
    assert (
        not pl.Series([None, "missing role"])
        .to_frame("reason")
        .select(is_superseded(pl.col("reason")))["reason"]
        .any()
    )


def test_reconciliation_trips_when_a_period_disagrees_with_its_days():
    days = [
        daily_report(date(2026, 11, 2), frame, messages=5, errors=1, new_user_ids={"a"}).row(
            0, named=True
        )
        for frame in (
            analytics([{"user_id": "a", "topic": "billing"}, {"user_id": "b", "topic": "bug"}]),
            analytics([{"user_id": "b", "topic": "billing"}]),
        )
    ]
    week = combine("weekly", "2026-11-02", date(2026, 11, 2), pl.DataFrame(days)).row(0, named=True)
    assert reconciliation_verdict(week, days).passed
    assert (week["users"], week["conversations"], week["messages"]) == (2, 3, 10)

    tampered = {**week, "messages": 11, "topics": [{"value": "billing", "count": 3}]}
    verdict = reconciliation_verdict(tampered, days)
    assert not verdict.passed
    assert verdict.metadata["mismatches"] == {
        "messages": {"period": 11, "days": 10},
        "topics": {"period": {"billing": 3}, "days": {"billing": 2, "bug": 1}},
    }
    # A day left out of the combination is caught too.
    assert not reconciliation_verdict(week, days[:1]).passed


def test_reconciliation_catches_a_mean_of_means_and_every_distribution_and_model():
    """It compared counts, users and topics only: a week whose quality was the mean of its
    daily means (0.5 instead of the pooled 0.1), or whose intents or per-model parts
    disagreed with its days, passed."""
    low = analytics([{"quality_score": 0.0, "intent": "question"}] * 9)
    high = analytics([{"quality_score": 1.0, "intent": "complaint", "model": "b"}])
    days = [
        daily_report(date(2026, 11, 2 + n), frame, messages=2, errors=0).row(0, named=True)
        for n, frame in enumerate((low, high))
    ]
    week = combine("weekly", "2026-11-02", date(2026, 11, 2), pl.DataFrame(days)).row(0, named=True)
    assert reconciliation_verdict(week, days).passed
    assert week["quality_mean"] == pytest.approx(0.1)

    mean_of_means = {**week, "quality_mean": 0.5}
    assert reconciliation_verdict(mean_of_means, days).metadata["mismatches"] == {
        "quality_mean": {"period": 0.5, "days": pytest.approx(0.1)}
    }
    inflated = {**week, "quality_sum": week["quality_sum"] + 1, "quality_mean": 0.2}
    assert set(reconciliation_verdict(inflated, days).metadata["mismatches"]) == {
        "quality_sum", "quality_mean"
    }  # fmt: skip
    intents = {**week, "intents": [{"value": "question", "count": 10}]}
    assert set(reconciliation_verdict(intents, days).metadata["mismatches"]) == {"intents"}
    models = [{**m, "conversations": m["conversations"] + 1} if m["model"] == "b" else m
              for m in week["per_model"]]  # fmt: skip
    assert set(reconciliation_verdict({**week, "per_model": models}, days).metadata[
        "mismatches"]) == {"per_model"}  # fmt: skip


def test_values_left_empty_warn_above_two_percent_of_the_days_records():
    assert values_left_empty_verdict(2, 100).passed
    over = values_left_empty_verdict(3, 100, {"invalid feedback '…'": 3})
    assert not over.passed
    assert over.metadata["rate"] == 0.03 and over.metadata["reasons"] == {"invalid feedback '…'": 3}
    # A day without records has nothing to warn of.
    assert values_left_empty_verdict(0, 0).passed


def test_one_day_over_the_error_rate_in_a_range_backfill_keeps_the_other_days_reports(
    tmp_path, mongo_server
):
    """The check was blocking, and a blocking check is judged per step, not per day: one
    bad day in a single-run backfill left every day of it without a report and without its
    MongoDB mirror. Now that day's report is built and marks itself incomplete."""
    from dagster import DagsterInstance

    from analytics_assets.sources.generator import SampleSpec, generate_sample, write_export
    from analytics_assets_tests.conftest import export_definitions, range_tags
    from analytics_assets_tests.test_assets import read_asset

    spec = SampleSpec(days=3, conversations=90, users=15, seed=12, with_bad_records=False)
    data = generate_sample(spec)
    bad_day = "2026-11-02"
    theirs = [m for m in data.messages if (m["created_at"] or "").startswith(bad_day)]
    for message in theirs[::8]:  # 12.5 % of the day's messages: a role nobody knows
        message["role"] = "bot"
    # Another day's feedback written as nobody reads it: kept without it, not an error.
    odd_day = "2026-11-03"
    for message in [m for m in data.messages if (m["created_at"] or "").startswith(odd_day)][::8]:
        message["feedback"] = "thumbs_up"
    write_export(data, tmp_path / "export")
    defs, lake, mongo = export_definitions(tmp_path, mongo_server, "checks_one_bad_day")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.end)
    )
    assert result.success
    reports = {row["period"]: row for row in read_asset(lake, "daily_report").iter_rows(named=True)}
    assert sorted(reports) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert [reports[day]["complete"] for day in sorted(reports)] == [True, False, True]
    [note] = reports[bad_day]["missing_inputs"]
    assert note.startswith(f"processing_errors {bad_day} (") and "over 2%" in note
    assert mongo.db()["analytics_reports"].count_documents({"kind": "daily"}) == 3

    failed = {
        (e.check_name, e.partition)
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity.value == "ERROR"
    }
    assert failed == {
        ("error_rate_below_threshold", bad_day),
        ("daily_report_inputs_complete", bad_day),
    }
    # The values left empty are a warning of their own, on their day only.
    left_empty = {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "optional_values_mostly_valid"
    }
    assert {day: e.passed for day, e in left_empty.items()} == {
        "2026-11-01": True, bad_day: True, odd_day: False,
    }  # fmt: skip
    figures = left_empty[odd_day].metadata
    assert left_empty[odd_day].severity.value == "WARN"
    assert figures["reasons"].value == {
        "invalid feedback '…'": figures["kept_without_values"].value
    }
    assert figures["kept_without_values"].value > 0.02 * figures["records"].value


def test_a_period_report_built_without_a_day_between_its_built_days_fails_its_check():
    """The weekly and monthly checks compared a report with the days it had: a week with a
    day missing agreed with its other six and passed, though it marks itself incomplete."""
    from analytics_assets.defs.analytics.checks import _missing_between

    built = [date(2026, 11, 2), date(2026, 11, 3), date(2026, 11, 5)]
    missing_inputs = [
        "daily_report 2026-11-04",  # between two built days: a gap
        "daily_report 2026-11-06",  # after the last built day: the freshness check's
        "conversation_messages 2026-11-03",  # a day's own missing input
        "in progress: 3 of 7 days reported",
    ]
    assert _missing_between(missing_inputs, built) == [
        "daily_report 2026-11-04",
        "conversation_messages 2026-11-03",
    ]
    # A month before the source began: no day built, nothing it could have had.
    assert _missing_between(["daily_report 2026-10-01", "daily_report 2026-10-02"], []) == []
    # The bounds are the lake's history, not the period's days: the week of 11-02 without
    # its Monday and its Sunday passed, though the days around them were built.
    week_without_its_ends = [date(2026, 11, 3) + timedelta(days=n) for n in range(5)]
    history = [date(2026, 11, 1), *week_without_its_ends, date(2026, 11, 9)]
    ends = ["daily_report 2026-11-02", "daily_report 2026-11-08"]
    assert _missing_between(ends, history) == ends
    assert _missing_between(ends, week_without_its_ends) == []


def test_records_on_two_days_pass_the_key_checks_in_a_range_run_as_in_day_runs(
    tmp_path, mongo_server
):
    """Keys were checked over the whole run: a message NocoDB delivered at 23:59:59 and
    again at 00:00:01 failed the blocking check of a range backfill (no day got its
    conversations), while the same days run one by one passed. Keys are now unique within
    their day, as validation keeps them; a conversation held on two days, which both days
    count, is named by a WARN check in either kind of run."""
    from dagster import DagsterInstance

    from analytics_assets.sources.generator import SampleSpec, generate_sample, write_export
    from analytics_assets_tests.conftest import export_definitions, range_tags

    spec = SampleSpec(days=3, conversations=90, users=15, seed=12, with_bad_records=False)
    data = generate_sample(spec)
    first = next(m for m in data.messages if m["created_at"].startswith("2026-11-01"))
    before_midnight = dict(first, created_at="2026-11-01 23:59:59+00:00")
    after_midnight = dict(first, created_at="2026-11-02 00:00:01+00:00",
                          CreatedAt="2026-11-02 00:00:02+00:00")  # fmt: skip
    data.messages += [before_midnight, after_midnight]
    header = next(c for c in data.conversations if c["started_at"].startswith("2026-11-02"))
    data.conversations.append(dict(header, started_at="2026-11-01 22:00:00+00:00"))
    # Two days apart: both days counted it too, and the check looked at the neighbouring
    # days only; it looks 30 days around, in a run of one day as in a range run.
    apart = next(c for c in data.conversations if c["started_at"].startswith("2026-11-03"))
    data.conversations.append(dict(apart, started_at="2026-11-01 21:00:00+00:00"))
    selection = [AssetKey(name) for name in (
        "nocodb_raw_pages", "conversation_messages", "conversation_headers",
        "processing_errors", "user_pseudonyms", "conversations")]  # fmt: skip

    def failing_checks(root, runs: list[dict]) -> dict:
        """The latest verdict of each check and day that is not a pass, after `runs` on a
        lake and database of their own."""
        write_export(data, root / "export")
        defs, _, _ = export_definitions(root, mongo_server, f"checks_two_days_{root.name}")
        job, instance, latest = (
            defs.resolve_job_def("ingestion_job"),
            DagsterInstance.ephemeral(),
            {},
        )
        for run in runs:
            result = job.execute_in_process(instance=instance, asset_selection=selection, **run)
            assert result.success
            for e in result.get_asset_check_evaluations():
                # Counted, never named: check metadata is kept where no erasure reaches.
                assert "conversation_ids" not in e.metadata
                counted = e.metadata.get("conversations_on_two_days")
                latest[(e.check_name, e.partition, e.severity.value)] = (
                    None if e.passed else (counted.value if counted else 0)
                )
        return {key: found for key, found in latest.items() if found is not None}

    ranged = failing_checks(tmp_path / "range", [{"tags": range_tags(spec.start, spec.end)}])
    assert ranged == {
        ("conversation_ids_on_one_day", "2026-11-01", "WARN"): 2,
        ("conversation_ids_on_one_day", "2026-11-02", "WARN"): 1,
        ("conversation_ids_on_one_day", "2026-11-03", "WARN"): 1,
    }
    # Day by day, as the schedule runs them: the 1st is judged again once the 2nd is in (the
    # check reads the days around it from the lake).
    days = [{"partition_key": day} for day in ("2026-11-01", "2026-11-02", "2026-11-03",
                                               "2026-11-01")]  # fmt: skip
    assert failing_checks(tmp_path / "by_day", days) == ranged


def test_a_message_delivered_again_after_midnight_counts_on_its_first_day_only():
    """NocoDB held m-1 at 23:59 on the 3rd and again at 00:00 on the 4th; each day keeps its
    copy, and the reports' `messages` were 2 and 1 (a week of 3) for two messages that
    their conversation's `message_count` counts as 2."""
    from analytics_assets.defs.analytics.assets import _messages_by_day

    third, fourth = date(2026, 11, 3), date(2026, 11, 4)
    held = pl.LazyFrame(
        {
            "day": [third, third, fourth, fourth],
            "conversation_id": ["c-1", "c-1", "c-1", "c-2"],
            # m-1 of another conversation on the 4th is another message.
            "message_id": ["m-0", "m-1", "m-1", "m-1"],
        }
    )
    assert _messages_by_day(held) == {third: 2, fourth: 1}
    assert _messages_by_day(pl.LazyFrame()) == {}


def test_the_daily_reports_count_a_message_delivered_again_after_midnight_once(
    tmp_path, mongo_server
):
    """The reports' `messages` of a range held a message NocoDB had on two days twice; their
    sum is now the number of messages the lake holds, each counted once."""
    from dagster import DagsterInstance

    from analytics_assets.sources.generator import SampleSpec, generate_sample, write_export
    from analytics_assets_tests.conftest import export_definitions, range_tags
    from analytics_assets_tests.test_assets import read_asset

    spec = SampleSpec(days=2, conversations=60, users=10, seed=4, with_bad_records=False)
    data = generate_sample(spec)
    first = next(m for m in data.messages if m["created_at"].startswith("2026-11-01"))
    first["created_at"] = "2026-11-01 23:59:59+00:00"
    data.messages.append(dict(first, created_at="2026-11-02 00:00:01+00:00",
                              CreatedAt="2026-11-02 00:00:02+00:00"))  # fmt: skip
    write_export(data, tmp_path / "export")
    defs, lake, _ = export_definitions(tmp_path, mongo_server, "checks_report_redelivery")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.end)
    )
    assert result.success
    held = read_asset(lake, "conversation_messages")
    distinct = held.select("conversation_id", "message_id").unique().height
    assert held.height == distinct + 1  # the copy on the 2nd
    reports = read_asset(lake, "daily_report")
    assert reports["messages"].sum() == distinct
