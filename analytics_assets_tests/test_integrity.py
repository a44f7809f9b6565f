"""Issue 18: nothing dropped silently, whatever path read it. Against the real NocoDB where
the case concerns the source."""

from __future__ import annotations

import time
from datetime import date, timedelta

import polars as pl
import pytest
from dagster import DagsterInstance

from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion.resources import (
    NocoDBSourceResource,
    SourceSchemaConfig,
    SyncSettings,
)
from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets.sources.seed import TABLE_COLUMNS, create_base, create_table
from analytics_assets.sources.sync_cursor import SyncCursor
from analytics_assets_tests.conftest import days_requested, make_client, range_tags
from analytics_assets_tests.test_assets import read_asset
from analytics_assets_tests.test_sync import tick

DAYS = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]


def _message(message_id: str, created_at: str, stored_at: str, conversation: str = "") -> dict:
    conversation = conversation or f"c-{created_at[9]}"  # the day's own conversation
    return {"message_id": message_id, "conversation_id": conversation, "role": "user",
            "content": "hello", "created_at": created_at, "stored_at": stored_at}  # fmt: skip


# The stored time is a column of the team's own here (mapped as CreatedAt), because NocoDB
# stamps its CreatedAt at insert: a test cannot put it on a past day.
OUT_OF_RANGE = {
    "m-1970": ("1970-01-01 00:00:00", "2026-11-02 09:00:00"),
    "m-2100": ("2100-01-01 00:00:00", "2026-11-02 09:05:00"),
    # Logged two days after it was stored: a future-dated event, filed under its stored day.
    "m-ahead": ("2026-11-03 12:00:00", "2026-11-01 10:00:00"),
}
# Enough clean records that the rejected ones stay under the blocking 2 % error rate.
IN_RANGE = {
    f"m-{n}": (f"2026-11-0{1 + n % 3} {n // 3 % 24:02}:{n // 72:02}:00",
               f"2026-11-0{1 + n % 3} {n // 3 % 24:02}:{n // 72:02}:01")
    for n in range(600)
}  # fmt: skip
# Messages of a conversation nobody has, and of one whose record is rejected (no user).
ORPHANS = {"m-ghost": "c-ghost", "m-of-rejected": "c-rejected"}
# An event a few hours after its stored time (clock skew): still its own day.
IN_RANGE["m-skew"] = ("2026-11-03 02:00:00", "2026-11-02 23:00:00")


@pytest.fixture(scope="module")
def out_of_range_base(nocodb):
    with make_client(nocodb) as client:
        base_id = create_base(client, "integrity_dates")
        ids = {
            "conversations": create_table(
                client, base_id, "conversations", TABLE_COLUMNS["conversations"]
            ),
            "messages": create_table(
                client, base_id, "messages", [*TABLE_COLUMNS["messages"], ("stored_at", "DateTime")]
            ),
        }
        client.insert_records(ids["conversations"], [
            {"conversation_id": f"c-{day.day}", "user_id": "u-1", "model": "m",
             "channel": "web", "started_at": f"{day} 00:00:00"} for day in DAYS
        ] + [{"conversation_id": "c-rejected", "started_at": "2026-11-02 08:00:00"}])  # fmt: skip
        client.insert_records(ids["messages"], [
            _message(key, *times) for key, times in {**IN_RANGE, **OUT_OF_RANGE}.items()
        ] + [_message(key, "2026-11-02 09:00:00", "2026-11-02 09:00:01", conversation)
             for key, conversation in ORPHANS.items()])  # fmt: skip
    return base_id


def _defs(nocodb, base_id: str, lake: ParquetLakeIOManager, mongo):
    from analytics_assets.deployments import storage_resources

    source = NocoDBSourceResource(
        url=nocodb.url, api_token=nocodb.token, base_id=base_id, requests_per_second=0,
        source_schema=SourceSchemaConfig(message_fields={"CreatedAt": "stored_at"}),
    )  # fmt: skip
    return build_definitions(
        resources={
            "record_source": source,
            "sync_settings": SyncSettings(bootstrap="all"),
            **storage_resources({"base_url": lake.base_url}, mongo),
        }
    )


def _ingest(defs, **run):
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), **run
    )
    assert result.success
    return result


def _stored(lake) -> tuple[dict, dict]:
    messages = read_asset(lake, "conversation_messages")
    errors = read_asset(lake, "processing_errors").filter(pl.col("table") == "messages")
    return (
        dict(zip(messages["message_id"], messages["day"], strict=True)),
        {
            key: (day, reason)
            for key, day, reason in errors.select("key", "day", "reason").iter_rows()
        },
    )


def test_out_of_range_event_times_are_quarantined_by_every_path(
    nocodb, out_of_range_base, mongo, tmp_path
):
    by_day = ParquetLakeIOManager(base_url=str(tmp_path / "by_day"))
    ranged = ParquetLakeIOManager(base_url=str(tmp_path / "ranged"))
    for day in DAYS:
        _ingest(_defs(nocodb, out_of_range_base, by_day, mongo), partition_key=day.isoformat())
    # Three days: one key-range read of each table, split by day locally.
    _ingest(_defs(nocodb, out_of_range_base, ranged, mongo), tags=range_tags(DAYS[0], DAYS[-1]))

    for lake in (by_day, ranged):
        messages, errors = _stored(lake)
        assert set(messages) == set(IN_RANGE) | set(ORPHANS)
        assert messages["m-skew"] == date(2026, 11, 3)
        # Each out-of-range record is an error on the day NocoDB stored it, with its reason.
        assert {key: day for key, (day, _) in errors.items()} == {
            "m-1970": date(2026, 11, 2), "m-2100": date(2026, 11, 2),
            "m-ahead": date(2026, 11, 1),
        }  # fmt: skip
        assert "1970-01-01" in errors["m-1970"][1]
        assert "outside partition day 2026-11-02" in errors["m-1970"][1]
    assert _stored(by_day) == _stored(ranged)


def test_the_change_sensor_requests_the_day_an_out_of_range_record_is_filed_under(
    nocodb, out_of_range_base, mongo, tmp_path
):
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    defs = _defs(nocodb, out_of_range_base, lake, mongo)
    result = tick(defs, DagsterInstance.ephemeral(), "nocodb_changes_sensor")
    # No 1970 or 2100 day, nothing pending for a partition that will never exist.
    assert days_requested(result.run_requests) == [d.isoformat() for d in DAYS]
    assert SyncCursor.from_json(result.cursor).pending_days == set()


def test_orphan_messages_are_named_by_a_check(nocodb, out_of_range_base, mongo, tmp_path):
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    result = _ingest(
        _defs(nocodb, out_of_range_base, lake, mongo), tags=range_tags(DAYS[0], DAYS[-1])
    )
    checks = {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "messages_belong_to_a_conversation"
    }
    assert {day: check.passed for day, check in checks.items()} == {
        "2026-11-01": True, "2026-11-02": False, "2026-11-03": True,
    }  # fmt: skip
    named = checks["2026-11-02"].metadata
    assert named["orphan_messages"].value == 1
    # Counted, not named: check metadata is kept where no erasure reaches.
    assert named["orphan_conversations"].value == 1
    assert "conversation_ids" not in named
    # The rejected conversation's message is counted apart: its reason is an error already.
    assert named["messages_of_rejected_conversations"].value == 1


def test_a_ticks_reads_follow_the_changes_not_the_table(nocodb):
    """After a bulk load has settled, a tick reads the new records and the load's last second
    (NocoDB's filters are to the second), not the load; the cursor keeps no id."""
    from datetime import UTC, datetime

    from analytics_assets.sources.nocodb import NocoDBSource
    from analytics_assets.sources.sync_cursor import TableCursor

    with make_client(nocodb) as client:
        base_id = create_base(client, "integrity_ticks")
        table = create_table(client, base_id, "messages", TABLE_COLUMNS["messages"])
        create_table(client, base_id, "conversations", TABLE_COLUMNS["conversations"])
        for batch in range(3):  # a load that takes a few seconds, as real ones do
            client.insert_records(table, [_message(f"bulk-{batch}-{n}", "2026-11-02 10:00:00", "")
                                          for n in range(1000)])  # fmt: skip
            time.sleep(1.1)
        source = NocoDBSource(client, base_id=base_id)
        overlap, clock = timedelta(minutes=5), datetime.now(UTC)
        cursor = TableCursor()
        cursor.start_at(datetime(1970, 1, 1, tzinfo=UTC), overlap, clock)
        everything = source.changes_since("messages", cursor.since(overlap))
        assert cursor.advance(everything.changes, overlap, clock) == {date(2026, 11, 2): 3000}
        # Within the overlap the window is read again (late commits), and recognised.
        window = source.changes_since("messages", cursor.since(overlap))
        assert len(window.changes) == 3000
        assert cursor.advance(window.changes, overlap, clock + timedelta(minutes=1)) == {}
        # Once the overlap has passed, the next scan starts at the watermark's second.
        assert cursor.advance(window.changes, overlap, clock + timedelta(minutes=6)) == {}
        client.insert_records(table, [_message(f"new-{n}", "2026-11-03 10:00:00", "")
                                      for n in range(3)])  # fmt: skip
        scan = source.changes_since("messages", cursor.since(overlap))
        assert len(scan.changes) <= 1003 and scan.requests <= 2
        assert cursor.advance(scan.changes, overlap, clock + timedelta(minutes=7)) == {
            date(2026, 11, 3): 3
        }
        assert len(SyncCursor(tables={"messages": cursor}).to_json()) < 400


def test_a_report_built_over_a_missing_day_says_so_and_its_check_fails(tmp_path, mongo_server):
    import shutil

    from analytics_assets_tests.conftest import sample_definitions

    defs, lake, _ = sample_definitions(tmp_path, mongo_server, "integrity_missing_day")
    instance = DagsterInstance.ephemeral()
    first, removed, last = date(2026, 11, 8), date(2026, 11, 9), date(2026, 11, 10)
    later = date(2026, 11, 11)
    assert (
        defs.resolve_job_def("ingestion_job")
        .execute_in_process(instance=instance, tags=range_tags(first, later))
        .success
    )
    before = read_asset(lake, "daily_report").filter(pl.col("day") == last)
    assert before["complete"].item() and before["previous_period"].item() == "2026-11-09"
    # An operator (or a failed write) loses one day of conversation_analytics.
    shutil.rmtree(lake.lake().base_path / "conversation_analytics" / f"day={removed}")
    result = defs.resolve_job_def("daily_report_job").execute_in_process(
        instance=instance, partition_key=last.isoformat()
    )
    assert result.success  # the report is kept, marked, and its check fails
    report = read_asset(lake, "daily_report").filter(pl.col("day") == last)
    assert not report["complete"].item()
    assert report["missing_inputs"].to_list() == [["conversation_analytics 2026-11-09"]]
    assert report["previous_period"].item() is None  # no change against a gap
    (check,) = [
        e for e in result.get_asset_check_evaluations()
        if e.check_name == "daily_report_inputs_complete"
    ]  # fmt: skip
    assert not check.passed and check.severity.value == "ERROR"
    assert check.metadata["missing_inputs"].value == ["conversation_analytics 2026-11-09"]
    # Two days on, its neighbours are there, but the day is still among the 30 its new
    # users were told from: a returning user seen only then counts as new.
    assert (
        defs.resolve_job_def("daily_report_job")
        .execute_in_process(instance=instance, partition_key=later.isoformat())
        .success
    )
    report = read_asset(lake, "daily_report").filter(pl.col("day") == later)
    assert report["missing_inputs"].to_list() == [
        ["conversation_analytics 2026-11-09 (new users' look-back)"]
    ]


def test_event_times_in_a_text_column_are_pulled_by_day_as_by_range(nocodb):
    """A CSV import, or `created_at` changed to a text column, keeps the times as text:
    NocoDB's date filters match none of them, so a pull of one day returned nothing and every
    rebuild emptied the day without an error, while a range pull (filed locally) found all."""
    from analytics_assets.sources.nocodb import NocoDBSource

    text_times = [
        (name, "SingleLineText" if name == "created_at" else uidt)
        for name, uidt in TABLE_COLUMNS["messages"]
    ]
    with make_client(nocodb) as client:
        base_id = create_base(client, "integrity_text_times")
        table = create_table(client, base_id, "messages", text_times)
        create_table(client, base_id, "conversations", TABLE_COLUMNS["conversations"])
        client.insert_records(table, [
            {"message_id": f"t-{day.day}-{n}", "conversation_id": f"c-{day.day}",
             "role": "user", "content": "hello", "created_at": f"{day} {n:02}:30:00+00:00"}
            for day in DAYS for n in range(4)
        ])  # fmt: skip
        source = NocoDBSource(client, base_id=base_id)
        ranged = source.fetch_range("messages", DAYS)
        for day in DAYS:
            by_day = source.fetch_day("messages", day).frame
            assert by_day.height == 4, day
            assert sorted(by_day["record_id"]) == sorted(ranged[day].frame["record_id"])


def test_a_table_without_an_optional_column_is_pulled_with_the_field_null(nocodb):
    """`feedback` dropped from the table stopped every pull (and each run spent its retries
    on it); a required column missing is still a configuration error, named."""
    from analytics_assets.nocodb.errors import NocoDBNotFoundError
    from analytics_assets.sources.nocodb import NocoDBSource
    from analytics_assets.transforms.records import validate_messages

    without = {"feedback", "latency_ms"}
    with make_client(nocodb) as client:
        base_id = create_base(client, "integrity_optional_columns")
        table = create_table(client, base_id, "messages", [
            column for column in TABLE_COLUMNS["messages"] if column[0] not in without
        ])  # fmt: skip
        create_table(client, base_id, "conversations", [
            column for column in TABLE_COLUMNS["conversations"] if column[0] != "user_id"
        ])  # fmt: skip
        client.insert_records(table, [
            {"message_id": f"o-{n}", "conversation_id": "c-1", "role": "user",
             "content": "hello", "created_at": f"{DAYS[0]} 0{n}:00:00"}
            for n in range(3)
        ])  # fmt: skip
        source = NocoDBSource(client, base_id=base_id)
        pulled = source.fetch_day("messages", DAYS[0]).frame
        assert source.fields_not_in_source == {"messages": sorted(without)}
        with pytest.raises(NocoDBNotFoundError, match="user_id"):
            source.fetch_day("conversations", DAYS[0])
    validated = validate_messages(pulled)
    assert validated.valid.height == 3 and validated.rejected.height == 0
    assert validated.valid["feedback"].is_null().all()
    assert validated.valid["latency_ms"].is_null().all()


def test_a_required_column_missing_fails_the_pull_once_not_after_its_retries(
    nocodb, mongo, tmp_path
):
    """Retrying cannot add a column: the step's retry policy waited about five minutes on
    it in every run before the run failed."""
    with make_client(nocodb) as client:
        base_id = create_base(client, "integrity_required_column")
        create_table(client, base_id, "conversations", TABLE_COLUMNS["conversations"])
        create_table(client, base_id, "messages", [
            *(column for column in TABLE_COLUMNS["messages"] if column[0] != "content"),
            ("stored_at", "DateTime"),
        ])  # fmt: skip
    defs = _defs(nocodb, base_id, ParquetLakeIOManager(base_url=str(tmp_path / "lake")), mongo)
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), partition_key=DAYS[0].isoformat(),
        raise_on_error=False,
    )  # fmt: skip
    assert not result.success
    kinds = [event.event_type_value for event in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in kinds
    [failure] = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert "content" in str(failure.event_specific_data.error)
