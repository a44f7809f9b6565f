"""The asset graph end to end: from a seeded real NocoDB and from the sample export."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from dagster import DagsterInstance, load_assets_from_modules, materialize

from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion import assets as ingestion_assets
from analytics_assets.defs.ingestion.resources import ExportSourceResource, NocoDBSourceResource
from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets.deployments import privacy_for, storage_resources
from analytics_assets.settings import get_settings
from analytics_assets.sources.generator import SampleData, SampleSpec, generate_sample
from analytics_assets.sources.nocodb import NocoDBSource
from analytics_assets.storage.collections import COLLECTIONS
from analytics_assets_tests.conftest import SEEDED_SPEC, make_client, range_tags

ASSETS = (
    "nocodb_raw_pages",
    "conversation_messages",
    "conversation_headers",
    "conversations",
    "processing_errors",
)


def read_asset(lake: ParquetLakeIOManager, asset: str) -> pl.DataFrame:
    """Every day of an asset in the lake, local or S3."""
    return lake.lake().scan_all(asset).collect()


def event_day(text: str | None) -> date | None:
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC).date()


def expected(data: SampleData, days: set[date], *, export: bool) -> dict[str, set]:
    """What the lake must hold for `days`, computed from the generator's own records.

    A record without event time belongs to the day it was stored: the export's CreatedAt,
    or, for a seeded NocoDB, the seeding day (outside the sample's days).
    """

    def day_of(record: dict, event_field: str) -> date | None:
        fallback = event_day(record["CreatedAt"]) if export else None
        return event_day(record[event_field]) or fallback

    rejected = {
        (p.table, p.key)
        for p in data.problems
        if not p.reason.startswith("duplicate") and not p.kept
    }
    messages = {
        m["message_id"]
        for m in data.messages
        if event_day(m["created_at"]) in days and ("messages", m["message_id"]) not in rejected
    }
    conversations = {
        c["conversation_id"]
        for c in data.conversations
        if event_day(c["started_at"]) in days
        and ("conversations", c["conversation_id"]) not in rejected
    }
    located = {("messages", m["message_id"]): day_of(m, "created_at") for m in data.messages} | {
        ("conversations", c["conversation_id"]): day_of(c, "started_at") for c in data.conversations
    }
    errors = {
        (p.table, p.key, p.reason.split()[0])
        for p in data.problems
        if located[(p.table, p.key)] in days
    }
    return {"messages": messages, "conversations": conversations, "errors": errors}


def run_range(defs, first: date, last: date):
    return defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        tags=range_tags(first, last),
    )


def assert_lake_matches(
    lake: ParquetLakeIOManager, data: SampleData, days: set[date], *, export: bool
):
    want = expected(data, days, export=export)
    messages = read_asset(lake, "conversation_messages")
    conversations = read_asset(lake, "conversations")
    errors = read_asset(lake, "processing_errors")
    assert messages.height == len(want["messages"])
    assert set(messages["message_id"]) == want["messages"]
    assert conversations.height == len(want["conversations"])
    assert set(conversations["conversation_id"]) == want["conversations"]
    got_errors = {
        (row["table"], row["key"], row["reason"].split()[0]) for row in errors.iter_rows(named=True)
    }
    assert got_errors == want["errors"]
    # A record holding a wrong optional value is kept, with that value left empty.
    stored = {"messages": messages, "conversations": conversations}
    for problem in (p for p in data.problems if p.kept and p.key in want[p.table]):
        field = "rating" if problem.table == "conversations" else problem.reason.split()[-1]
        key = "message_id" if problem.table == "messages" else "conversation_id"
        assert stored[problem.table].filter(pl.col(key) == problem.key)[field].to_list() == [None]
    # Every message of every conversation is counted once, including those past midnight.
    counted = conversations["message_count"].sum()
    owned = messages.filter(pl.col("conversation_id").is_in(conversations["conversation_id"]))
    assert counted == owned.height


def assert_mongo_matches_lake(mongo, lake: ParquetLakeIOManager):
    """MongoDB's collections hold exactly the lake's rows, by the same ids."""
    db = mongo.db()
    for asset in ("conversation_messages", "conversation_analytics"):
        spec = COLLECTIONS[asset]
        rows = read_asset(lake, asset).select(spec.id_fields).to_dicts()
        ids = {spec.document_id(row) for row in rows}
        collection = spec.name
        assert db[collection].count_documents({}) == len(ids)
        assert {doc["_id"] for doc in db[collection].find({}, {"_id": 1})} == ids
    errors = read_asset(lake, "processing_errors")
    assert db["processing_errors"].count_documents({}) == errors.height


@pytest.mark.nocodb
def test_three_partitions_from_a_seeded_nocodb_equal_what_was_seeded(
    nocodb, seeded_sample, mongo, tmp_path
):
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    storage = storage_resources({"base_url": lake.base_url}, mongo)
    source = NocoDBSourceResource(
        url=nocodb.url,
        api_token=nocodb.token,
        base_id=seeded_sample.base.base_id,
        requests_per_second=0,
    )
    defs = build_definitions(resources={"record_source": source, **storage})
    days = {SEEDED_SPEC.start + timedelta(days=n) for n in range(3)}
    result = run_range(defs, min(days), max(days))
    assert result.success
    assert_lake_matches(lake, seeded_sample.data, days, export=False)
    raw_metadata = result.asset_materializations_for_node("nocodb_raw_pages")[0].metadata
    assert raw_metadata["requests"].value >= 12  # 3 days x 2 tables x 2 queries
    assert nocodb.token not in str(
        [m.metadata for m in result.asset_materializations_for_node("nocodb_raw_pages")]
    )

    # Re-materializing one partition replaces it: same rows, no duplicates.
    before = read_asset(lake, "conversation_messages").sort("message_id")
    again = materialize(
        load_assets_from_modules([ingestion_assets]),
        resources={"record_source": source, "privacy": privacy_for(get_settings()), **storage},
        partition_key=SEEDED_SPEC.start.isoformat(),
    )
    assert again.success
    after = read_asset(lake, "conversation_messages").sort("message_id")
    assert after.drop("record_id").equals(before.drop("record_id"))
    assert_mongo_matches_lake(mongo, lake)


@pytest.mark.nocodb
def test_records_without_event_time_reach_the_day_nocodb_stored_them(nocodb, seeded_sample):
    today = datetime.now(UTC).date()
    with make_client(nocodb) as client:
        source = NocoDBSource(client, base_id=seeded_sample.base.base_id)
        keys = {
            kind: [
                record["record"]
                for record in source.fetch_day(kind, today).frame.iter_rows(named=True)
            ]
            for kind in ("messages", "conversations")
        }
    no_time = [
        p
        for p in seeded_sample.data.problems
        if p.reason.startswith("missing ") and p.reason.endswith(("created_at", "started_at"))
    ]
    assert len(no_time) == 2
    for problem in no_time:
        assert any(f'"{problem.key}"' in record for record in keys[problem.table])


def test_the_sample_export_materializes_end_to_end(mongo, tmp_path):
    spec = SampleSpec()
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    source = ExportSourceResource(
        export_dir=str(tmp_path / "export"), generate_sample_if_missing=True
    )
    storage = storage_resources({"base_url": lake.base_url}, mongo)
    defs = build_definitions(resources={"record_source": source, **storage})
    result = run_range(defs, spec.start, spec.end)
    assert result.success
    days = {spec.start + timedelta(days=n) for n in range(spec.days)}
    data = generate_sample(spec)
    assert_lake_matches(lake, data, days, export=True)
    for asset in ASSETS:
        assert lake.lake().days_present(asset) == sorted(days)
    # The sample's size as the product promises it.
    messages = read_asset(lake, "conversation_messages")
    conversations = read_asset(lake, "conversations")
    assert conversations.height >= 2000 and messages.height >= 20000
    assert conversations["user_id"].n_unique() >= 200
    assert conversations["model"].n_unique() >= 3
    assert_mongo_matches_lake(mongo, lake)
    # Freshness wants yesterday's report; the sample ends on 2026-11-14 (test_reports covers it).
    check_results = [
        check
        for check in result.get_asset_check_evaluations()
        if check.check_name != "freshness_check"
    ]
    assert check_results and all(check.passed for check in check_results)


@pytest.mark.nocodb
def test_a_range_fetch_that_fails_stops_reading_the_shards_still_queued(
    nocodb, seeded_sample, monkeypatch
):
    """A shard that fails (its retries spent) ends the range read: the shards still queued
    are cancelled, not each read (every one spending its retries against a source that is
    down) before the step's own retry can start."""
    from analytics_assets.nocodb.client import NocoDBClient, RetryPolicy
    from analytics_assets.nocodb.errors import NocoDBRetriesExhaustedError
    from analytics_assets.sources import nocodb as nocodb_source
    from analytics_assets_tests.fault_proxy import FaultProxy

    monkeypatch.setattr(nocodb_source, "SHARDS_PER_WORKER", 8)
    days = [*seeded_sample.data.days(), datetime.now(UTC).date()]
    # Table metadata (2 requests) and key bounds (2) pass; the first page fails.
    plan = [None] * 4 + ["500"]
    with (
        FaultProxy(nocodb.url, plan) as proxy,
        NocoDBClient(
            proxy.url,
            nocodb.token,
            requests_per_second=0,
            page_size=50,
            retry=RetryPolicy(max_attempts=1),
        ) as client,
    ):
        source = NocoDBSource(client, base_id=seeded_sample.base.base_id)
        with pytest.raises(NocoDBRetriesExhaustedError):
            source.fetch_range("messages", days, workers=1)
        # Eight shards, two readers: the first shard fails on its first page; the other
        # reader's shard, and the one the failed reader took at once, are read (a quarter
        # of the pages); the five others are not. Before, all seven were read (47 requests
        # for 42 pages; 17 now).
        pages = -(-len(seeded_sample.data.messages) // 50)
        assert client.stats.requests < pages * 2 // 3, (client.stats.requests, pages)


@pytest.mark.nocodb
def test_a_range_fetch_equals_day_by_day_fetches_row_for_row(nocodb, seeded_sample):
    """A backfill reads each table once by key range and splits by day locally; what each
    day gets is exactly what that day's own queries return (ids and record JSON), the
    records without an event time (stored today) included."""
    today = datetime.now(UTC).date()
    days = [*seeded_sample.data.days(), today]
    with make_client(nocodb, page_size=50) as client:
        source = NocoDBSource(client, base_id=seeded_sample.base.base_id)
        for kind in ("conversations", "messages"):
            ranged = source.fetch_range(kind, days, workers=3)
            assert ranged is not None and set(ranged) == set(days)
            for day in days:
                by_day = source.fetch_day(kind, day).frame
                got = ranged[day].frame
                assert got.height == by_day.height > 0, (kind, day)
                assert sorted(got["record"]) == sorted(by_day["record"]), (kind, day)
                assert sorted(got["record_id"]) == sorted(by_day["record_id"])
                assert set(got["day"]) == {day} and set(got["table"]) == {kind}
                # 50-row pages: a day's records came from at least its share of pages.
                assert ranged[day].pages >= -(-got.height // 50)
        # Both tables read at once, as `nocodb_raw_pages` reads them: the same rows.
        together = source.fetch_ranges(["conversations", "messages"], days, workers=3)
        assert set(together) == {"conversations", "messages"}
        for kind, ranged in together.items():
            alone = source.fetch_range(kind, days, workers=3)
            for day in days:
                got, expected = ranged[day].frame["record"], alone[day].frame["record"]
                assert sorted(got) == sorted(expected), (kind, day)
        # A short range is left to the per-day queries.
        assert source.fetch_range("messages", days[:2]) is None
        assert source.fetch_ranges(["conversations", "messages"], days[:2]) == {}
