"""A conversation that goes on past midnight: its day, built before the next day existed,
is built again by `conversations_across_midnight_sensor` once the next day's messages are
in, on the sample export, a real embedded MongoDB-compatible server and a local lake."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta

import polars as pl
from dagster import DagsterInstance, build_sensor_context

from analytics_assets.defs.ingestion.across_midnight import SENSOR_NAME
from analytics_assets.defs.ingestion.resources import ExportSourceResource
from analytics_assets.sources.generator import SampleSpec, generate_sample, write_export
from analytics_assets_tests.conftest import range_tags, sample_definitions
from analytics_assets_tests.test_assets import read_asset

SPEC = SampleSpec(days=2, conversations=240, users=40, seed=7, with_bad_records=False)
DAY, NEXT = SPEC.start, SPEC.start + timedelta(days=1)


def _day(text: str) -> date:
    return datetime.fromisoformat(text).astimezone(UTC).date()


def _sample_with_a_conversation_past_midnight():
    """The sample with its first conversation of DAY moved to start at 23:58, a message a
    minute: its later messages fall on NEXT."""
    data = generate_sample(SPEC)
    moved = next(
        c for c in data.conversations
        if _day(c["started_at"]) == DAY
        and sum(m["conversation_id"] == c["conversation_id"] for m in data.messages) >= 4
    )  # fmt: skip
    start = datetime.combine(DAY, time(23, 58), tzinfo=UTC)
    for field in ("started_at", "CreatedAt"):
        moved[field] = str(start)
    moved["UpdatedAt"] = None
    owned = [m for m in data.messages if m["conversation_id"] == moved["conversation_id"]]
    for position, message in enumerate(owned):
        message["created_at"] = message["CreatedAt"] = str(start + timedelta(minutes=position))
    return data


def _across_midnight(data) -> dict[str, int]:
    """Conversations started on DAY with messages on NEXT: their true message counts."""
    started = {c["conversation_id"] for c in data.conversations if _day(c["started_at"]) == DAY}
    counts: dict[str, int] = {}
    late = set()
    for message in data.messages:
        if message["conversation_id"] in started:
            counts[message["conversation_id"]] = counts.get(message["conversation_id"], 0) + 1
            if _day(message["created_at"]) == NEXT:
                late.add(message["conversation_id"])
    return {conversation: counts[conversation] for conversation in late}


def _definitions(root, mongo_server, database):
    # This export, not the bundled sample generated where none is found.
    source = ExportSourceResource(export_dir=str(root / "export"))
    return sample_definitions(root, mongo_server, database, record_source=source)


def _evaluate(defs, instance, cursor=None):
    sensor = defs.get_sensor_def(SENSOR_NAME)
    resources = {"lake": defs.resources["lake"]}
    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return sensor(context)


def _counts(lake, asset: str, conversations) -> dict[str, int]:
    frame = read_asset(lake, asset).filter(pl.col("conversation_id").is_in(list(conversations)))
    return dict(frame.select("conversation_id", "message_count").iter_rows())


def test_a_day_is_built_again_once_its_conversations_past_midnight_are_in(tmp_path, mongo_server):
    data = _sample_with_a_conversation_past_midnight()
    write_export(data, tmp_path / "export")
    late = _across_midnight(data)
    assert late, "the sample must have a conversation that goes on past midnight"
    defs, lake, _ = _definitions(tmp_path, mongo_server, "across_midnight")
    job = defs.resolve_job_def("ingestion_job")
    instance = DagsterInstance.ephemeral()
    # As the daily schedule does: each day once it has closed, one run each.
    for day in (DAY, NEXT):
        assert job.execute_in_process(instance=instance, partition_key=day.isoformat()).success
    cut = _counts(lake, "conversation_analytics", late)
    assert all(cut[c] < late[c] for c in late), "built before NEXT, cut at midnight"

    result = _evaluate(defs, instance)
    (request,) = result.run_requests
    assert request.partition_key == DAY.isoformat()
    rebuilt = {key.to_user_string() for key in request.asset_selection}
    assert {"conversations", "conversation_analytics", "daily_report"} <= rebuilt
    # Not the day's pull and validation, which did not change.
    assert not rebuilt & {"nocodb_raw_pages", "conversation_messages", "message_signals"}
    assert job.execute_in_process(
        instance=instance,
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        tags=request.tags,
    ).success
    assert _counts(lake, "conversation_analytics", late) == late
    assert _counts(lake, "conversations", late) == late

    # Done: nothing more until what DAY read of NEXT changes.
    again = _evaluate(defs, instance, cursor=result.cursor)
    assert not again.run_requests
    # NEXT built again from the same records (a re-pull): DAY would be written as it is.
    assert job.execute_in_process(instance=instance, partition_key=NEXT.isoformat()).success
    unchanged = _evaluate(defs, instance, cursor=again.cursor)
    assert not unchanged.run_requests, "NEXT's messages of DAY's conversations did not change"
    assert "without a change to what they read" in unchanged.skip_reason.skip_message

    # A message of DAY's conversation on NEXT is edited at the source: DAY is built again.
    edited = next(
        m for m in data.messages if m["conversation_id"] in late and _day(m["created_at"]) == NEXT
    )
    edited["content"] = "Edited after midnight: the invoice is still wrong."
    edited["UpdatedAt"] = str(datetime.combine(NEXT, time(12), tzinfo=UTC))
    write_export(data, tmp_path / "export")
    assert job.execute_in_process(instance=instance, partition_key=NEXT.isoformat()).success
    after_edit = _evaluate(defs, instance, cursor=unchanged.cursor)
    assert [r.partition_key for r in after_edit.run_requests] == [DAY.isoformat()]


def test_a_day_is_built_again_when_its_messages_past_midnight_are_deleted(tmp_path, mongo_server):
    """The sensor asked for D only while D+1 held messages of D's conversations: once they
    were deleted at the source, D+1 was rebuilt without them and D kept counting them."""
    data = _sample_with_a_conversation_past_midnight()
    write_export(data, tmp_path / "export")
    late = _across_midnight(data)
    defs, lake, _ = _definitions(tmp_path, mongo_server, "across_midnight_deleted")
    job = defs.resolve_job_def("ingestion_job")
    instance = DagsterInstance.ephemeral()
    assert job.execute_in_process(instance=instance, tags=range_tags(DAY, NEXT)).success
    assert _counts(lake, "conversations", late) == late
    cursor = _evaluate(defs, instance).cursor

    # The messages after midnight are deleted at the source, and NEXT is built again.
    data.messages = [
        m for m in data.messages
        if not (m["conversation_id"] in late and _day(m["created_at"]) == NEXT)
    ]  # fmt: skip
    write_export(data, tmp_path / "export")
    assert job.execute_in_process(instance=instance, partition_key=NEXT.isoformat()).success
    result = _evaluate(defs, instance, cursor=cursor)
    (request,) = result.run_requests
    assert request.partition_key == DAY.isoformat()
    assert job.execute_in_process(
        instance=instance, partition_key=request.partition_key,
        asset_selection=request.asset_selection, tags=request.tags,
    ).success  # fmt: skip
    before_midnight = {
        conversation: sum(
            m["conversation_id"] == conversation and _day(m["created_at"]) == DAY
            for m in data.messages
        )
        for conversation in late
    }
    assert _counts(lake, "conversations", late) == before_midnight
    assert not _evaluate(defs, instance, cursor=result.cursor).run_requests


def test_a_range_run_needs_nothing_built_again(tmp_path, mongo_server):
    write_export(_sample_with_a_conversation_past_midnight(), tmp_path / "export")
    defs, _, _ = _definitions(tmp_path, mongo_server, "across_midnight_range")
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ingestion_job")
    assert job.execute_in_process(instance=instance, tags=range_tags(DAY, NEXT)).success
    result = _evaluate(defs, instance)
    assert not result.run_requests


def test_a_day_another_run_is_writing_waits_for_it(tmp_path, mongo_server):
    """A range backfill over days built before builds D+1's messages before D's
    conversations: the sensor asked for D then, and its run wrote D's slices while the
    backfill did (two writers of one day can leave a MongoDB day empty)."""
    import uuid

    from dagster import DagsterRun, DagsterRunStatus

    write_export(_sample_with_a_conversation_past_midnight(), tmp_path / "export")
    defs, _, _ = _definitions(tmp_path, mongo_server, "across_midnight_busy")
    job = defs.resolve_job_def("ingestion_job")
    instance = DagsterInstance.ephemeral()
    for day in (DAY, NEXT):
        assert job.execute_in_process(instance=instance, partition_key=day.isoformat()).success
    first = _evaluate(defs, instance)
    assert [r.partition_key for r in first.run_requests] == [DAY.isoformat()]
    # A backfill of both days is under way, and has built NEXT's inputs again.
    backfill = DagsterRun(
        job_name="ingestion_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
        tags=range_tags(DAY, NEXT),
    )  # fmt: skip
    instance.add_run(backfill)
    assert job.execute_in_process(instance=instance, partition_key=NEXT.isoformat()).success
    waiting = _evaluate(defs, instance, cursor=first.cursor)
    assert waiting.run_requests == []
    assert DAY.isoformat() in waiting.skip_reason.skip_message
    # The day waits in the cursor, which moves on (a run that never ends holds back its own
    # day only).
    assert json.loads(waiting.cursor)["deferred"] == [DAY.isoformat()]
    assert json.loads(waiting.cursor)["after_storage_id"] > json.loads(first.cursor)[
        "after_storage_id"]  # fmt: skip
    # Once it has finished, the day is looked at again (here the backfill never rebuilt DAY,
    # so DAY is asked for; a real one would have, and nothing would be).
    instance.report_run_canceled(backfill)
    after = _evaluate(defs, instance, cursor=waiting.cursor)
    assert [r.partition_key for r in after.run_requests] == [DAY.isoformat()]


def test_a_conversation_taken_up_two_days_later_counts_the_same_in_a_range_and_day_runs(
    tmp_path, mongo_server
):
    """A user who comes back to a thread two days later: a run of the conversation's day
    reads its day and the next, a range run read every day of its range, and counted the
    later message (12 messages and 38 hours against 11 and 7 minutes), until an unrelated
    rebuild of the day flipped it back."""
    spec = SampleSpec(days=4, conversations=160, users=30, seed=11, with_bad_records=False)
    days = [spec.start + timedelta(days=n) for n in range(4)]
    data = generate_sample(spec)
    taken_up = next(
        c for c in data.conversations
        if _day(c["started_at"]) == days[0]
        and sum(m["conversation_id"] == c["conversation_id"] for m in data.messages) >= 3
    )  # fmt: skip
    owned = [m for m in data.messages if m["conversation_id"] == taken_up["conversation_id"]]
    later = datetime.combine(days[2], time(9), tzinfo=UTC)
    owned[-1]["created_at"] = owned[-1]["CreatedAt"] = str(later)
    figures = {}
    for mode in ("range", "days"):
        root = tmp_path / mode
        write_export(data, root / "export")
        defs, lake, _ = _definitions(root, mongo_server, f"taken_up_{mode}")
        job = defs.resolve_job_def("ingestion_job")
        instance = DagsterInstance.ephemeral()
        if mode == "range":
            assert job.execute_in_process(instance=instance, tags=range_tags(days[0], days[-1]))
        else:
            # Latest first: each day is built once its next day is in (as the across-midnight
            # sensor makes it), so both modes read the same days.
            for day in reversed(days):
                assert job.execute_in_process(instance=instance, partition_key=day.isoformat())
        figures[mode] = {
            asset: read_asset(lake, asset).sort("conversation_id").drop("run_id", strict=False)
            for asset in (
                "conversations", "conversation_analytics", "conversation_categories",
                "conversation_languages",
            )
        }  # fmt: skip
    for asset, frame in figures["range"].items():
        assert frame.equals(figures["days"][asset]), asset
    [row] = (
        figures["range"]["conversations"]
        .filter(pl.col("conversation_id") == taken_up["conversation_id"])
        .to_dicts()
    )
    assert row["message_count"] == len(owned) - 1
    assert row["ended_at"] < later
