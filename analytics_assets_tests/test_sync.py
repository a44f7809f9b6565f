"""Incremental sync against the real NocoDB: the change sensor requests exactly the days that
changed, the reconciliation the days that lost records, and after the runs the lake and
MongoDB hold what the source holds. The cursor on its own: dedup, overlap, restarts."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import polars as pl
import pytest
from dagster import DagsterInstance

from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion.resources import NocoDBSourceResource, SyncSettings
from analytics_assets.defs.sensor_ticks import evaluate
from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets.deployments import storage_resources
from analytics_assets.sources.base import Change
from analytics_assets.sources.generator import SampleSpec, generate_sample
from analytics_assets.sources.nocodb import NocoDBSource
from analytics_assets.sources.seed import create_base, create_table, seed_nocodb
from analytics_assets.sources.sync_cursor import SyncCursor, TableCursor
from analytics_assets_tests.conftest import (
    days_requested,
    make_client,
    range_tags,
    run_requested,
)
from analytics_assets_tests.test_assets import read_asset

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
OVERLAP = timedelta(minutes=5)


def change(record_id: str, seconds: int, day: date = date(2026, 11, 2)) -> Change:
    return Change(record_id, T0 + timedelta(seconds=seconds), day)


def test_the_cursor_moves_on_source_time_and_drops_what_it_has_seen():
    table = TableCursor()
    day = date(2026, 11, 2)
    assert table.since(OVERLAP) is None
    assert table.advance([change("1", 0), change("2", 10)], OVERLAP) == {day: 2}
    assert table.watermark == T0 + timedelta(seconds=10)
    assert table.since(OVERLAP) == T0 + timedelta(seconds=10) - OVERLAP
    # The next tick's overlap returns both again, plus an edit of 1 and a new 3 on another day.
    other = date(2026, 11, 3)
    again = [change("1", 0), change("2", 10), change("1", 20), change("3", 30, other)]
    assert table.advance(again, OVERLAP) == {day: 1, other: 1}
    # The same scan again: nothing new.
    assert table.advance(again, OVERLAP) == {}
    # A record the source stamped 2 minutes before the watermark but committed late (another
    # app server, clock skew, a slow transaction) is inside the overlap: found.
    late = change("4", 30 - 120)
    assert table.advance([*again, late], OVERLAP) == {day: 1}
    assert table.watermark == T0 + timedelta(seconds=30)  # never moves back
    # A record gone from the window (deleted) changes its day's fingerprint: rebuilt.
    assert table.advance([change("2", 10), change("1", 20), change("3", 30, other)], OVERLAP) == {
        day: 0
    }


def test_the_cursor_stays_small_whatever_a_bulk_load_wrote():
    table = TableCursor()
    bulk = [change(str(n), n % 200, date(2026, 11, 1) + timedelta(days=n % 60))
            for n in range(150_000)]  # fmt: skip
    assert sum(table.advance(bulk, OVERLAP).values()) == 150_000
    cursor = SyncCursor(tables={"messages": table})
    assert len(cursor.to_json()) < 64 * 1024
    # The same bulk within the overlap at the next tick: recognised without a single id.
    assert table.advance(bulk, OVERLAP) == {}


def test_the_cursor_survives_a_restart_as_small_json():
    cursor = SyncCursor()
    cursor.table("messages").advance([change("1", 0), change("2", 5)], OVERLAP)
    cursor.pending_days.add(date(2026, 11, 30))
    text = cursor.to_json()
    assert len(text) < 300
    restored = SyncCursor.from_json(text)
    assert restored.to_json() == text
    assert restored.table("messages").advance([change("2", 5), change("1", 0)], OVERLAP) == {}
    assert SyncCursor.from_json(None).tables == {}
    with pytest.raises(ValueError, match="version"):
        SyncCursor.from_json('{"v": 99}')
    # A version-1 cursor (ids, not fingerprints) keeps its watermark; its window is rebuilt.
    old = (
        '{"v":1,"tables":{"messages":{"watermark":"2026-11-30T12:00:05+00:00",'
        '"recent":{"1":"2026-11-30T12:00:00+00:00"}}},"pending_days":[]}'
    )
    migrated = SyncCursor.from_json(old).table("messages")
    assert migrated.watermark == T0 + timedelta(seconds=5)
    assert migrated.advance([change("1", 0)], OVERLAP) == {date(2026, 11, 2): 1}


def test_a_watermark_set_back_by_hand_replays_from_there():
    """docs/operations.md: "to replay from a point in time, set the cursor's watermark
    back". The scan started at `window_from`, which stayed recent, so nothing was replayed;
    and a time typed without an offset failed every tick (naive against aware)."""
    cursor = SyncCursor()
    table = cursor.table("messages")
    table.advance([change("1", 0), change("2", 5)], OVERLAP, now=T0)
    table.advance([change("2", 5)], OVERLAP, now=T0 + 2 * OVERLAP)  # settled
    data = SyncCursor.from_json(cursor.to_json())
    text = cursor.to_json().replace(
        '"watermark":"2026-11-30T12:00:05+00:00"', '"watermark":"2026-11-20T00:00:00"'
    )
    assert text != cursor.to_json()
    replaying = SyncCursor.from_json(text).table("messages")
    assert replaying.watermark == datetime(2026, 11, 20, tzinfo=UTC)
    assert replaying.since(OVERLAP) == datetime(2026, 11, 20, tzinfo=UTC) - OVERLAP
    older = Change("0", datetime(2026, 11, 25, tzinfo=UTC), date(2026, 11, 25))
    replayed = replaying.advance([older, change("1", 0), change("2", 5)], OVERLAP, now=T0)
    assert {date(2026, 11, 25), date(2026, 11, 2)} <= set(replayed)
    # Left alone, the scan still starts where the settled window does.
    assert data.table("messages").since(OVERLAP) == T0 + timedelta(seconds=5)


def test_records_written_while_the_first_tick_starts_are_new():
    """`ANALYTICS_SYNC_BOOTSTRAP=latest`: what is older than the newest record is taken as
    loaded; a record written between reading the newest and scanning the overlap is newer,
    and was dropped with the overlap."""
    from analytics_assets.defs.ingestion.sensors import _bootstrap
    from analytics_assets.sources.base import ChangeScan

    class Source:
        def latest_version(self, kind):
            return T0

        def changes_since(self, kind, since):
            written_meanwhile = Change("9", T0 + timedelta(seconds=1), date(2026, 11, 18))
            return ChangeScan([change("1", 0), written_meanwhile], requests=1, seconds=0.0)

    context = SimpleNamespace(log=SimpleNamespace(info=lambda message: None))
    table = TableCursor()
    days = _bootstrap(context, Source(), "messages", table, "latest", OVERLAP, T0)
    assert days == [date(2026, 11, 18)]
    assert table.watermark == T0 + timedelta(seconds=1)


def test_the_reconciliation_compares_only_days_kept_and_recent():
    from analytics_assets.defs.ingestion.sensors import _reconciled_days

    today = datetime.now(UTC).date()
    first, last = today - timedelta(days=400), today - timedelta(days=1)
    everything = _reconciled_days(SyncSettings(), {}, first, last)
    assert everything(first) and everything(last) and not everything(today)
    kept = _reconciled_days(SyncSettings(), {"conversation_messages": 30}, first, last)
    assert kept(today - timedelta(days=30)) and not kept(today - timedelta(days=31))
    recent = _reconciled_days(SyncSettings(reconcile_days=7), {}, first, last)
    assert recent(last - timedelta(days=6)) and not recent(last - timedelta(days=7))


def test_the_days_the_lake_lacks_are_built_newest_first_unless_a_run_is_on_them():
    from collections import Counter

    from analytics_assets.defs.ingestion import sensors
    from analytics_assets.sources.base import DayVersions

    start = date(2026, 1, 1)
    on_source = Counter({start + timedelta(days=n): 3 for n in range(100)})
    in_source = {
        "messages": DayVersions({}, set(), ("UpdatedAt", "CreatedAt"), on_source),
        "conversations": DayVersions({}, set(), ("UpdatedAt", "CreatedAt")),
    }
    held = {start + timedelta(days=10), start + timedelta(days=11)}
    in_flight = {start + timedelta(days=99)}
    lacking = sensors._days_the_lake_lacks(in_source, held, lambda day: True, in_flight)
    # Days 0-9 are history not loaded yet; 99 has a run; 12..98 lack, the newest 31 of them.
    assert list(lacking) == [start + timedelta(days=n) for n in range(68, 99)]
    assert lacking[start + timedelta(days=98)] == {
        "missing_day_conversations": 0,
        "missing_day_messages": 3,
    }
    within = sensors._days_the_lake_lacks(in_source, held, lambda day: day.day == 20, set())
    assert list(within) == [date(2026, 1, 20), date(2026, 2, 20), date(2026, 3, 20)]


# Clean records: the sample's deliberate bad ones are tested elsewhere, and in a sample this
# small they would trip the blocking error-rate check.
SPEC = SampleSpec(
    start=date(2026, 11, 1), days=3, conversations=40, users=12, seed=11, with_bad_records=False
)
DAYS = [SPEC.start + timedelta(days=n) for n in range(SPEC.days)]


@pytest.fixture(scope="module")
def synced(nocodb, mongo_server, tmp_path_factory):
    from analytics_assets.defs.storage.resources import MongoResource

    data = generate_sample(SPEC)
    with make_client(nocodb) as client:
        base = seed_nocodb(client, data, base_title="sync_test")
    root = tmp_path_factory.mktemp("sync")
    lake = ParquetLakeIOManager(base_url=str(root / "lake"))
    mongo = MongoResource(uri=mongo_server, database="sync_test")
    defs = build_definitions(
        resources={
            "record_source": NocoDBSourceResource(
                url=nocodb.url, api_token=nocodb.token, base_id=base.base_id,
                requests_per_second=0,
            ),
            "sync_settings": SyncSettings(),
            **storage_resources({"base_url": lake.base_url}, mongo),
        }
    )  # fmt: skip
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=instance, tags=range_tags(DAYS[0], DAYS[-1])
    )
    assert result.success
    return defs, instance, base, lake, mongo


def tick(defs, instance, name: str, cursor: str | None = None):
    return evaluate(defs, instance, name, cursor)


def run_days(defs, instance, partition_keys: list[str]) -> None:
    for key in partition_keys:
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=instance, partition_key=key
        )
        assert result.success


def _insert_user_messages(nocodb, base, days, name: str, content: str, at: str) -> None:
    """One user message on each of `days` at `at` (HH:MM), in conversation `c-<name>`, with
    ids `<name>-<day of month>`."""
    with make_client(nocodb) as client:
        client.insert_records(base.table_ids["messages"], [{
            "message_id": f"{name}-{day.day}", "conversation_id": f"c-{name}", "role": "user",
            "content": content, "created_at": f"{day.isoformat()} {at}:00",
        } for day in days])  # fmt: skip


def source_messages(nocodb, base) -> pl.DataFrame:
    with make_client(nocodb) as client:
        table = base.table_ids["messages"]
        rows = list(client.iter_records(table, fields=["message_id", "content"]))
    return pl.DataFrame(rows).select("message_id", "content").sort("message_id")


def lake_messages(lake) -> pl.DataFrame:
    return read_asset(lake, "conversation_messages").select("message_id", "content")


def test_the_sensor_and_the_reconciliation_keep_the_lake_and_mongo_equal_to_nocodb(synced, nocodb):
    defs, instance, base, lake, mongo = synced
    messages_table = base.table_ids["messages"]

    # First tick: starts from the newest record (history came from the backfill above).
    first = tick(defs, instance, "nocodb_changes_sensor")
    assert first.run_requests == []
    cursor = first.cursor
    assert SyncCursor.from_json(cursor).table("messages").watermark is not None
    # Nothing changed: nothing to do, however often it ticks (and after a "restart").
    assert tick(defs, instance, "nocodb_changes_sensor", cursor).run_requests == []

    with make_client(nocodb) as client:
        records = client.iter_records(
            messages_table, sort="Id", fields=["Id", "message_id", "conversation_id", "created_at"]
        )
        by_day: dict[date, list[dict]] = {}
        for record in records:
            by_day.setdefault(date.fromisoformat(record["created_at"][:10]), []).append(record)
        time.sleep(1.1)  # NocoDB's filters compare to the second
        # An edit on the first day, a late message for the second, a delete on the third.
        edited = {"Id": by_day[DAYS[0]][0]["Id"], "content": "edited after the backfill"}
        client.update_records(messages_table, [edited])
        client.insert_records(messages_table, [{
            "message_id": "late-message-1", "conversation_id": by_day[DAYS[1]][0][
                "conversation_id"], "role": "user", "content": "a late message",
            "created_at": f"{DAYS[1].isoformat()} 23:59:00", "prompt_tokens": 3,
            "completion_tokens": 0,
        }])  # fmt: skip
        deleted = by_day[DAYS[2]][0]
        client.delete_records(messages_table, [deleted["Id"]])
    # A copy read within the second of its edit is not trusted (NocoDB's times hold whole
    # seconds; sources/reconcile.py `_confirmed`), and the reconciliation below would read
    # the first day again: the run reads the edit a second later, as a real one would.
    time.sleep(1.1)

    second = tick(defs, instance, "nocodb_changes_sensor", cursor)
    # The delete is seen too: the record was in the overlap window the last tick hashed.
    assert days_requested(second.run_requests) == [d.isoformat() for d in DAYS]
    # Consecutive changed days in one range run, which builds each day with the next.
    (ranged,) = second.run_requests
    assert ranged.partition_key is None
    assert all(r.run_key and r.tags["analytics/trigger"] for r in second.run_requests)
    # The same tick evaluated again later (a failed cron tick, a daemon restarted while
    # submitting) names the same runs: their keys do not hold the sensor's clock.
    time.sleep(0.01)
    again = tick(defs, instance, "nocodb_changes_sensor", cursor)
    assert {r.run_key for r in again.run_requests} == {r.run_key for r in second.run_requests}
    observed = {e.partition: e.metadata for e in second.asset_events}
    assert observed[DAYS[0].isoformat()]["changed_messages"].value == 1
    assert observed[DAYS[2].isoformat()]["changed_messages"].value == 0
    run_requested(defs.resolve_job_def("ingestion_job"), instance, second.run_requests)
    # The same changes are not requested twice.
    assert tick(defs, instance, "nocodb_changes_sensor", second.cursor).run_requests == []

    # A delete long after the change sensor's overlap is invisible to a change feed: the
    # reconciliation finds its day.
    with make_client(nocodb) as client:
        deleted_later = by_day[DAYS[2]][1]
        client.delete_records(messages_table, [deleted_later["Id"]])
    reconcile = tick(defs, instance, "nocodb_reconciliation_sensor")
    assert [r.partition_key for r in reconcile.run_requests] == [DAYS[2].isoformat()]
    mismatch = reconcile.asset_events[0].metadata
    assert mismatch["deleted_messages"].value == 1
    run_days(defs, instance, [DAYS[2].isoformat()])
    assert tick(defs, instance, "nocodb_reconciliation_sensor").run_requests == []

    # A record the change feed did not see, then another on the same day: two runs. (The
    # run key held how many were missing, not which: the second was never loaded.)
    keys = []
    for number in (1, 2):
        with make_client(nocodb) as client:
            client.insert_records(messages_table, [{
                "message_id": f"unseen-message-{number}", "role": "user", "content": "unseen",
                "conversation_id": by_day[DAYS[1]][0]["conversation_id"],
                "created_at": f"{DAYS[1].isoformat()} 12:00:0{number}",
            }])  # fmt: skip
        (request,) = tick(defs, instance, "nocodb_reconciliation_sensor").run_requests
        keys.append(request.run_key)
        run_days(defs, instance, [request.partition_key])
    assert keys[0] != keys[1]

    # A day whose run failed for good (the change sensor requested it once and forgot it):
    # the lake lacks it, and the reconciliation builds it (it only compared the days the
    # lake held, so the day stayed missing).
    lake.lake().delete_day("nocodb_raw_pages", DAYS[1])
    (request,) = tick(defs, instance, "nocodb_reconciliation_sensor").run_requests
    assert request.partition_key == DAYS[1].isoformat()
    assert request.run_key.startswith(f"nocodb-reconcile-missing:{DAYS[1].isoformat()}:")
    run_days(defs, instance, [request.partition_key])
    assert tick(defs, instance, "nocodb_reconciliation_sensor").run_requests == []

    # The lake and MongoDB now hold exactly what NocoDB holds.
    source = source_messages(nocodb, base)
    stored = lake_messages(lake).filter(pl.col("message_id").is_in(source["message_id"]))
    assert lake_messages(lake).height == source.height  # nothing extra, nothing missing
    assert stored.sort("message_id").equals(source)
    mongo_ids = {d["message_id"] for d in mongo.db()["conversation_messages"].find({}, {
        "message_id": 1})}  # fmt: skip
    assert mongo_ids == set(source["message_id"])
    assert "late-message-1" in mongo_ids
    assert not {deleted["message_id"], deleted_later["message_id"]} & mongo_ids


def test_an_empty_source_then_its_first_records(nocodb, mongo_server, tmp_path):
    with make_client(nocodb) as client:
        base_id = create_base(client, "sync_empty")
        from analytics_assets.sources.seed import TABLE_COLUMNS

        tables = {name: create_table(client, base_id, name, cols)
                  for name, cols in TABLE_COLUMNS.items()}  # fmt: skip
    defs = build_definitions(
        resources={
            "record_source": NocoDBSourceResource(
                url=nocodb.url, api_token=nocodb.token, base_id=base_id, requests_per_second=0
            ),
            "sync_settings": SyncSettings(),
        }
    )
    instance = DagsterInstance.ephemeral()
    empty = tick(defs, instance, "nocodb_changes_sensor")
    assert empty.run_requests == []
    assert empty.skip_message
    with make_client(nocodb) as client:
        client.insert_records(tables["messages"], [{
            "message_id": "m-1", "conversation_id": "c-1", "role": "user", "content": "hello",
            "created_at": "2026-11-05 10:00:00",
        }])  # fmt: skip
    first_records = tick(defs, instance, "nocodb_changes_sensor", empty.cursor)
    assert [r.partition_key for r in first_records.run_requests] == ["2026-11-05"]


def test_today_waits_for_its_partition(nocodb, synced):
    defs, instance, base, _, _ = synced
    cursor = tick(defs, instance, "nocodb_changes_sensor").cursor
    today = datetime.now(UTC).date()
    time.sleep(1.1)
    with make_client(nocodb) as client:
        client.insert_records(base.table_ids["messages"], [{
            "message_id": "today-1", "conversation_id": "c-today", "role": "user",
            "content": "now", "created_at": f"{today.isoformat()} 00:00:01",
        }])  # fmt: skip
    result = tick(defs, instance, "nocodb_changes_sensor", cursor)
    assert result.run_requests == []
    assert SyncCursor.from_json(result.cursor).pending_days == {today}


def test_a_changed_day_another_run_is_writing_waits_for_it(nocodb, synced):
    """A range run has no `dagster/partition` tag, so the queue's per-partition limit did not
    hold the change sensor's range run apart from a rebuild of one of its days (which takes
    no lease): both wrote the day at once (found under the real daemon)."""
    import uuid

    from dagster import DagsterRun, DagsterRunStatus

    defs, instance, base, _, _ = synced
    cursor = tick(defs, instance, "nocodb_changes_sensor").cursor
    time.sleep(1.1)  # NocoDB's filters compare to the second
    _insert_user_messages(nocodb, base, DAYS[1:3], "busy", "while another run writes", "09:00")
    # The across-midnight sensor's rebuild of DAYS[1] is under way.
    rebuild = DagsterRun(
        job_name="ingestion_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED,
        tags={"dagster/partition": DAYS[1].isoformat()},
    )  # fmt: skip
    instance.add_run(rebuild)
    try:
        result = tick(defs, instance, "nocodb_changes_sensor", cursor)
        assert [r.partition_key for r in result.run_requests] == [DAYS[2].isoformat()]
        assert DAYS[1] in SyncCursor.from_json(result.cursor).pending_days
    finally:
        instance.delete_run(rebuild.run_id)
    # The rebuild ended: the day is asked for on the next tick, though nothing changed since.
    later = tick(defs, instance, "nocodb_changes_sensor", result.cursor)
    # Run a second after the inserts: a copy read within its version's second is read again
    # once by the reconciliation, and the next test expects it to find nothing.
    time.sleep(1.1)
    assert [r.partition_key for r in later.run_requests] == [DAYS[1].isoformat()]
    assert SyncCursor.from_json(later.cursor).pending_days == set()
    run_requested(
        defs.resolve_job_def("ingestion_job"), instance, [*result.run_requests, *later.run_requests]
    )


def test_mark_mode_records_deletions_without_rebuilding(nocodb, synced):
    defs, instance, base, lake, _ = synced
    marking = build_definitions(
        resources={**defs.resources, "sync_settings": SyncSettings(deletions="mark")}
    )
    with make_client(nocodb) as client:
        victim = next(
            client.iter_records(
                base.table_ids["messages"], where=f"(created_at,ge,exactDate,{DAYS[0]})",
                sort="Id", fields=["Id", "message_id"],
            )
        )  # fmt: skip
        client.delete_records(base.table_ids["messages"], [victim["Id"]])
    result = tick(marking, instance, "nocodb_reconciliation_sensor")
    assert result.run_requests == []
    marked = {e.partition: e.metadata for e in result.asset_events}
    assert marked[DAYS[0].isoformat()]["action"].value == "mark"
    assert marked[DAYS[0].isoformat()]["deleted_ids"].data == {"messages": [str(victim["Id"])]}
    # Kept in the lake until someone decides.
    assert victim["message_id"] in set(lake_messages(lake)["message_id"])


def test_a_record_fixed_in_nocodb_recovers_and_the_run_says_so(nocodb, synced):
    defs, instance, base, lake, _ = synced
    table = base.table_ids["messages"]
    cursor = tick(defs, instance, "nocodb_changes_sensor").cursor
    time.sleep(1.1)
    with make_client(nocodb) as client:
        client.insert_records(table, [{
            "message_id": "bad-role-1", "conversation_id": "c-x", "role": "bot",
            "content": "hi", "created_at": f"{DAYS[0].isoformat()} 08:00:00",
        }])  # fmt: skip
        bad = next(client.iter_records(table, where="(message_id,eq,bad-role-1)", fields=["Id"]))

    def sync(cursor):
        result = tick(defs, instance, "nocodb_changes_sensor", cursor)
        assert [r.partition_key for r in result.run_requests] == [DAYS[0].isoformat()]
        run = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=instance, partition_key=DAYS[0].isoformat()
        )
        assert run.success
        return result.cursor, run.asset_materializations_for_node("validated_records")

    cursor, materializations = sync(cursor)
    errors = next(m for m in materializations if m.asset_key.path[-1] == "processing_errors")
    assert (errors.metadata["new_errors"].value, errors.metadata["recovered"].value) == (1, 0)
    time.sleep(1.1)
    with make_client(nocodb) as client:
        client.update_records(table, [{"Id": bad["Id"], "role": "user"}])
    _, materializations = sync(cursor)
    errors = next(m for m in materializations if m.asset_key.path[-1] == "processing_errors")
    assert (errors.metadata["new_errors"].value, errors.metadata["recovered"].value) == (0, 1)
    assert "bad-role-1" in set(lake_messages(lake)["message_id"])


def test_a_rating_and_a_feedback_edit_reach_mongo_and_the_days_report(nocodb, synced, tmp_path):
    """The edits a user makes most (a rating, a thumbs down on a reply, its text) through the
    sensors from cron: the lake's conversation, MongoDB's documents and the day's report (lake
    and MongoDB) all hold them; the earlier tests checked message ids and contents only."""
    from analytics_assets.defs.sensor_ticks import tick as cron_tick

    defs, instance, base, lake, mongo = synced
    day = DAYS[1].isoformat()
    with make_client(nocodb) as client:
        conversation = next(client.iter_records(
            base.table_ids["conversations"], where=f"(started_at,ge,exactDate,{day})",
            sort="Id", fields=["Id", "conversation_id", "rating"],
        ))  # fmt: skip
        reply = next(client.iter_records(
            base.table_ids["messages"], sort="Id", fields=["Id", "message_id"],
            where=f"(conversation_id,eq,{conversation['conversation_id']})~and(role,eq,assistant)",
        ))  # fmt: skip
    rating = 1 if conversation["rating"] != 1 else 5

    def sync(sensor: str) -> None:
        outcome = cron_tick(defs, instance, sensor, tmp_path / f"{sensor}.json")
        assert not outcome.failed

    for sensor in ("nocodb_changes_sensor", "reports_after_a_day_changed_sensor"):
        sync(sensor)  # the first ticks start from what the backfill loaded
    time.sleep(1.1)  # NocoDB's filters compare to the second
    with make_client(nocodb) as client:
        client.update_records(
            base.table_ids["conversations"], [{"Id": conversation["Id"], "rating": rating}]
        )
        client.update_records(
            base.table_ids["messages"],
            [{"Id": reply["Id"], "content": "edited reply", "feedback": "down"}],
        )
    time.sleep(1.1)
    for sensor in (
        "nocodb_changes_sensor",
        "conversations_across_midnight_sensor",
        "reports_after_a_day_changed_sensor",
    ):
        sync(sensor)

    conversation_id = conversation["conversation_id"]
    analytics = read_asset(lake, "conversation_analytics")
    mine = analytics.filter(pl.col("conversation_id") == conversation_id).row(0, named=True)
    assert mine["rating"] == rating and mine["feedback_down"] >= 1
    document = mongo.db()["conversation_analytics"].find_one({"conversation_id": conversation_id})
    assert document["rating"] == rating
    assert document["satisfaction_score"] == pytest.approx(mine["satisfaction_score"])
    message = mongo.db()["conversation_messages"].find_one({"message_id": reply["message_id"]})
    assert (message["content"], message["feedback"]) == ("edited reply", "down")
    # The day's report is built from the edited conversations, in the lake and in MongoDB.
    of_day = analytics.filter(pl.col("day") == DAYS[1])
    report = read_asset(lake, "daily_report").filter(pl.col("period") == day).row(0, named=True)
    assert report["satisfaction_sum"] == pytest.approx(of_day["satisfaction_score"].sum())
    assert sum(part["thumbs_down"] for part in report["per_model"]) == of_day["feedback_down"].sum()
    stored = mongo.db()["analytics_reports"].find_one({"kind": "daily", "period": day})
    assert stored["satisfaction_sum"] == pytest.approx(report["satisfaction_sum"])


def test_an_erased_user_stays_erased_while_nocodb_still_holds_them(nocodb, synced):
    import shutil

    from analytics_assets.defs.privacy.jobs import run_erasure
    from analytics_assets.deployments import privacy_for
    from analytics_assets.settings import get_settings

    defs, instance, _, lake, _ = synced
    data = generate_sample(SPEC)
    user_id = data.conversations[0]["user_id"]
    theirs = {c["conversation_id"] for c in data.conversations if c["user_id"] == user_id}
    days = {c["started_at"][:10] for c in data.conversations if c["user_id"] == user_id}
    before = {r.partition_key for r in tick(defs, instance, "nocodb_reconciliation_sensor")
              .run_requests}  # fmt: skip
    # The same key as the synced definitions (the local deployment's key file).
    pseudonym = privacy_for(get_settings()).pseudonym(user_id)
    audit = run_erasure(defs, instance, pseudonym, requested_by="test")
    assert audit["raw_records_tombstoned"] > 0
    assert not theirs & set(read_asset(lake, "conversation_messages")["conversation_id"])

    # NocoDB still counts their records, but the reconciliation knows they were erased.
    after = tick(defs, instance, "nocodb_reconciliation_sensor")
    assert {r.partition_key for r in after.run_requests} == before
    # A full pull of their days keeps them out too.
    run_days(defs, instance, sorted(days))
    assert not theirs & set(read_asset(lake, "conversation_messages")["conversation_id"])
    # Without the tombstones, those days would be pulled back in.
    shutil.rmtree((lake.lake().base_path / "_privacy").path)
    forgotten = tick(defs, instance, "nocodb_reconciliation_sensor")
    assert days <= {r.partition_key for r in forgotten.run_requests}


def test_the_reconciliation_tells_moved_stale_and_deleted_records_apart():
    from analytics_assets.sources.reconcile import compare_day

    lake = {"1": "v1", "2": "v1", "3": "v1", "4": "v1"}
    source = {"1": "v1", "2": "v2", "5": "v1"}
    difference = compare_day(lake, source, source_ids={"1", "2", "3", "5"})
    assert difference.missing == ("5",)
    assert difference.stale == ("2",)
    assert difference.moved == ("3",)
    assert difference.deleted == ("4",)
    # A deployment that keeps deletions for review still repairs the rest.
    assert difference.needs_rebuild(remove_deleted=False)
    only_deleted = compare_day({"4": "v1"}, {}, source_ids=set())
    assert only_deleted and not only_deleted.needs_rebuild(remove_deleted=False)
    assert not compare_day(source, source, source_ids=set(source))


def test_the_lake_version_is_read_as_the_source_writes_it():
    """A version is parsed on both sides: the same moment written another way is no edit. A
    record polars' JSON path cannot read (an unpaired surrogate, stored as its escape) is
    read in Python: its version read as missing, and its day was rebuilt every day."""
    from analytics_assets.sources.reconcile import lake_versions
    from analytics_assets.transforms.raw import raw_frame_from_records

    day = date(2026, 11, 2)
    surrogate = raw_frame_from_records(
        [{"Id": 4, "content": "broken \ud800 text", "Updated At": "2026-11-02 11:00:00+00:00"}],
        table="messages", day=day, page=0, fetched_at=T0, source="test",
    )  # fmt: skip
    raw = pl.concat(
        [
            pl.DataFrame(
                {
                    "table": ["messages", "messages", "messages", "conversations"],
                    "day": [day] * 4,
                    "record_id": ["1", "2", "3", "1"],
                    "record": [
                        '{"Updated At": "2026-11-02 10:00:00+00:00", '
                        '"CreatedAt": "2026-11-02 09:00:00"}',
                        '{"Updated At": null, "CreatedAt": "2026-11-02T09:00:00.000Z"}',
                        "not json",
                        '{"edited": "2026-11-02 08:00:00+00:00"}',
                    ],
                }
            ),
            surrogate.select("table", "day", "record_id", "record"),
        ]
    ).lazy()
    fields = {"messages": ("Updated At", "CreatedAt"), "conversations": ("edited", "made")}
    assert lake_versions(raw, fields) == {
        "messages": {
            day: {
                "1": "2026-11-02T10:00:00+00:00",
                "2": "2026-11-02T09:00:00+00:00",
                "3": None,
                "4": "2026-11-02T11:00:00+00:00",
            }
        },
        "conversations": {day: {"1": "2026-11-02T08:00:00+00:00"}},
    }


def test_a_copy_read_within_its_versions_second_is_read_again():
    """NocoDB keeps its times to the second: a reply written, read by a pull and then given
    its tokens within one second kept the version the lake's copy has, and the lake kept the
    copy without them for good. Such a copy matches no version; read later, it does."""
    from analytics_assets.sources.reconcile import compare_day, lake_versions

    day = date(2026, 11, 2)
    written = "2026-11-02 10:00:07+00:00"
    raw = pl.DataFrame(
        {
            "table": ["messages", "messages"],
            "day": [day, day],
            "record_id": ["1", "2"],
            "record": [f'{{"UpdatedAt": "{written}"}}'] * 2,
            "fetched_at": [
                datetime(2026, 11, 2, 10, 0, 7, 400_000, tzinfo=UTC),  # within its second
                datetime(2026, 11, 2, 10, 0, 8, tzinfo=UTC),  # a second later
            ],
        }
    ).lazy()
    in_lake = lake_versions(raw, {"messages": ("UpdatedAt", "CreatedAt")})["messages"][day]
    in_source = {"1": "2026-11-02T10:00:07+00:00", "2": "2026-11-02T10:00:07+00:00"}
    assert compare_day(in_lake, in_source, in_source.keys()).stale == ("1",)


def _first_message_on(nocodb, table: str, day: date) -> dict:
    """The day's first message never edited: an edit within the change sensor's overlap
    would have its day requested anyway, whatever this test is about."""
    with make_client(nocodb) as client:
        records = client.iter_records(
            table, sort="Id", fields=["Id", "message_id", "content", "created_at", "UpdatedAt"]
        )
        return next(
            r
            for r in records
            if r["created_at"].startswith(day.isoformat()) and r["UpdatedAt"] is None
        )


def _days_holding(lake, message_id: str) -> list[date]:
    messages = read_asset(lake, "conversation_messages")
    return sorted(messages.filter(pl.col("message_id") == message_id)["day"].to_list())


def test_a_record_moved_to_another_day_or_edited_unseen_is_repaired(nocodb, synced):
    """Three ways the lake could keep an old copy: a record whose event time is edited onto
    another day stayed on its old day too (the change sensor requested only the new one); an
    edit whose run failed through all its retries was lost (the change cursor had moved on,
    and the reconciliation compared ids only); and a moved record read as deleted, so a
    deployment that keeps deletions for review kept it on its old day."""
    defs, instance, base, lake, _ = synced
    table = base.table_ids["messages"]
    # What earlier tests in this module left for the reconciliation is settled first.
    settle = tick(defs, instance, "nocodb_reconciliation_sensor").run_requests
    run_days(defs, instance, sorted({r.partition_key for r in settle}))
    assert tick(defs, instance, "nocodb_reconciliation_sensor").run_requests == []

    # 1. Moved: the change sensor asks for the record's old day as well as its new one.
    cursor = tick(defs, instance, "nocodb_changes_sensor").cursor
    moved = _first_message_on(nocodb, table, DAYS[0])
    time.sleep(1.1)  # NocoDB's filters compare to the second
    with make_client(nocodb) as client:
        client.update_records(
            table, [{"Id": moved["Id"], "created_at": f"{DAYS[2].isoformat()} 10:00:00"}]
        )
    result = tick(defs, instance, "nocodb_changes_sensor", cursor)
    assert sorted(r.partition_key for r in result.run_requests) == [
        DAYS[0].isoformat(),
        DAYS[2].isoformat(),
    ]
    observed = {e.partition: e.metadata for e in result.asset_events}
    # Asked for because the record left it. (Within the overlap window a record gone from a
    # day's window fingerprint asked for it too, with 0 changes; outside it nothing did.)
    assert observed[DAYS[0].isoformat()]["changed_messages"].value == 1
    run_days(defs, instance, [r.partition_key for r in result.run_requests])
    assert _days_holding(lake, moved["message_id"]) == [DAYS[2]]

    # 2. An edit whose run never succeeded: the cursor moved on, the reconciliation sees it.
    edited = _first_message_on(nocodb, table, DAYS[1])
    time.sleep(1.1)
    with make_client(nocodb) as client:
        client.update_records(table, [{"Id": edited["Id"], "content": "edited, run failed"}])
    lost = tick(defs, instance, "nocodb_changes_sensor", result.cursor)
    assert [r.partition_key for r in lost.run_requests] == [DAYS[1].isoformat()]
    assert tick(defs, instance, "nocodb_changes_sensor", lost.cursor).run_requests == []
    reconcile = tick(defs, instance, "nocodb_reconciliation_sensor")
    assert [r.partition_key for r in reconcile.run_requests] == [DAYS[1].isoformat()]
    assert reconcile.asset_events[0].metadata["stale_messages"].value == 1
    run_days(defs, instance, [DAYS[1].isoformat()])
    contents = lake_messages(lake).filter(pl.col("message_id") == edited["message_id"])
    assert contents["content"].to_list() == ["edited, run failed"]

    # 3. Moved with no change sensor at all, in a deployment that keeps deletions: moved is
    # not deleted, so both days are rebuilt.
    marking = build_definitions(
        resources={**defs.resources, "sync_settings": SyncSettings(deletions="mark")}
    )
    moved_again = _first_message_on(nocodb, table, DAYS[1])
    with make_client(nocodb) as client:
        client.update_records(
            table, [{"Id": moved_again["Id"], "created_at": f"{DAYS[0].isoformat()} 11:00:00"}]
        )
    # A copy read within its version's second is read again once (`reconcile._confirmed`):
    # the reconciliation runs hours after an edit, not within its second.
    time.sleep(1.1)
    reconcile = tick(marking, instance, "nocodb_reconciliation_sensor")
    assert sorted(r.partition_key for r in reconcile.run_requests) == [
        DAYS[0].isoformat(),
        DAYS[1].isoformat(),
    ]
    found = {e.partition: e.metadata for e in reconcile.asset_events}
    assert found[DAYS[1].isoformat()]["moved_messages"].value == 1
    assert "deleted_messages" not in found[DAYS[1].isoformat()]
    assert found[DAYS[0].isoformat()]["missing_messages"].value == 1
    run_days(marking, instance, [r.partition_key for r in reconcile.run_requests])
    assert _days_holding(lake, moved_again["message_id"]) == [DAYS[0]]
    assert tick(marking, instance, "nocodb_reconciliation_sensor").run_requests == []

    # 4. Moved, with no change sensor, to a day before the lake's first: the old day was
    # rebuilt without it and the new one never built, so the record was in neither.
    before_the_first = DAYS[0] - timedelta(days=2)
    moved_early = _first_message_on(nocodb, table, DAYS[1])
    with make_client(nocodb) as client:
        client.update_records(
            table,
            [{"Id": moved_early["Id"], "created_at": f"{before_the_first.isoformat()} 09:00:00"}],
        )
    time.sleep(1.1)  # as above: read a second after the edit
    reconcile = tick(defs, instance, "nocodb_reconciliation_sensor")
    assert sorted(r.partition_key for r in reconcile.run_requests) == [
        before_the_first.isoformat(),
        DAYS[1].isoformat(),
    ]
    found = {e.partition: e.metadata for e in reconcile.asset_events}
    assert found[before_the_first.isoformat()]["moved_here_messages"].value == 1
    run_days(defs, instance, [r.partition_key for r in reconcile.run_requests])
    assert _days_holding(lake, moved_early["message_id"]) == [before_the_first]
    assert tick(defs, instance, "nocodb_reconciliation_sensor").run_requests == []


def test_cron_ticks_without_the_daemon_run_the_days_and_keep_the_cursor(nocodb, synced, tmp_path):
    """`analytics-assets sensor-tick` (defs/sensor_ticks.py): the same sensors from cron."""
    from analytics_assets.cli import build_parser
    from analytics_assets.defs.sensor_ticks import tick as cron_tick

    defs, instance, base, lake, _ = synced
    cursor_file = tmp_path / "cursors" / "nocodb_changes_sensor.json"
    first = cron_tick(defs, instance, "nocodb_changes_sensor", cursor_file)
    assert first.requested == [] and cursor_file.exists()
    time.sleep(1.1)  # NocoDB's filters compare to the second
    _insert_user_messages(nocodb, base, DAYS[1:3], "cron", "from cron", "08:00")
    # Two consecutive days changed: one range run.
    both = f"{DAYS[1].isoformat()}..{DAYS[2].isoformat()}"
    preview = cron_tick(defs, instance, "nocodb_changes_sensor", cursor_file, dry_run=True)
    assert preview.requested == [both] and preview.ran == []
    lines: list[dict] = []
    ran = cron_tick(defs, instance, "nocodb_changes_sensor", cursor_file, report=lines.append)
    assert ran.ran == [both] and not ran.failed
    assert [line["event"] for line in lines] == ["sensor_evaluated", "run_finished"]
    assert {f"cron-{day.day}" for day in DAYS[1:3]} <= set(lake_messages(lake)["message_id"])
    # The cursor moved on: the next tick has nothing to do.
    assert cron_tick(defs, instance, "nocodb_changes_sensor", cursor_file).requested == []
    # The reconciliation from cron too: it runs the days it finds (earlier tests in this module
    # leave some to rebuild), after which the lake agrees with NocoDB.
    reconcile_file = tmp_path / "reconcile.json"
    reconcile = cron_tick(defs, instance, "nocodb_reconciliation_sensor", reconcile_file)
    assert reconcile.ran == reconcile.requested and not reconcile.failed
    again = cron_tick(defs, instance, "nocodb_reconciliation_sensor", reconcile_file)
    assert again.requested == [] and again.skip_reason
    args = build_parser().parse_args(["sensor-tick", "nocodb_reconciliation_sensor", "--dry-run"])
    assert args.dry_run and args.handler.__name__ == "run_sensor_tick"


def test_a_record_deleted_between_two_pages_hides_no_other_from_the_change_scan(nocodb, synced):
    """The change scan paged by offset: a matching record deleted after its page was read
    moved every later record back by one, so the next page started one too far and skipped
    a record, and an edit skipped so was lost once the watermark passed it. Paged by key,
    nothing is skipped. (Deleting mid-scan is the fault injected here, on
    the real NocoDB; this test runs last, as it changes the source.)"""
    _, _, base, _, _ = synced
    table = base.table_ids["messages"]
    everything = datetime(2000, 1, 1, tzinfo=UTC)
    with make_client(nocodb, page_size=5) as client:
        source = NocoDBSource(client, base_id=base.base_id)
        before = {
            change.record_id for change in source.changes_since("messages", everything).changes
        }
        read = client.request
        deleted: list[str] = []

        def request(method, path, **options):
            body = read(method, path, **options)
            if method == "GET" and path.endswith("/records") and not deleted:
                # The first record of the first page, once that page has been read.
                deleted.append(str(body["list"][0]["Id"]))
                with make_client(nocodb) as other:
                    other.delete_records(table, [int(deleted[0])])
            return body

        client.request = request
        after = {
            change.record_id for change in source.changes_since("messages", everything).changes
        }
    # The deleted record was read before it went; every other one is read too.
    assert deleted and after == before


def test_a_record_deleted_during_a_days_pull_hides_no_other(nocodb, synced):
    """The day's pull paged by offset too: a record deleted after its page was read moved
    every later one back, so the next page skipped one, and that day lacked it until the
    reconciliation ran. Paged by key, only the deleted record is missing."""
    _, _, base, _, _ = synced
    table = base.table_ids["messages"]
    with make_client(nocodb, page_size=5) as client:
        source = NocoDBSource(client, base_id=base.base_id)
        before = source.fetch_day("messages", DAYS[1]).frame["record_id"].to_list()
        read = client.request
        deleted: list[str] = []

        def request(method, path, **options):
            body = read(method, path, **options)
            if method == "GET" and path.endswith("/records") and not deleted and body["list"]:
                deleted.append(str(body["list"][0]["Id"]))
                with make_client(nocodb) as other:
                    other.delete_records(table, [int(deleted[0])])
            return body

        client.request = request
        after = source.fetch_day("messages", DAYS[1]).frame["record_id"].to_list()
    assert len(before) > 10 and deleted
    # The deleted record was read before it went; every other one is read too.
    assert after == before


def test_consecutive_changed_days_make_one_range_run_each():
    from analytics_assets.defs.partitions import consecutive_runs

    days = [date(2026, 11, n) for n in (5, 1, 2, 3, 7, 8)]
    assert consecutive_runs(days, most=31) == [
        (date(2026, 11, 1), date(2026, 11, 3)),
        (date(2026, 11, 5), date(2026, 11, 5)),
        (date(2026, 11, 7), date(2026, 11, 8)),
    ]
    # At most `most` days a run.
    assert consecutive_runs(days[1:4], most=2) == [
        (date(2026, 11, 1), date(2026, 11, 2)),
        (date(2026, 11, 3), date(2026, 11, 3)),
    ]
