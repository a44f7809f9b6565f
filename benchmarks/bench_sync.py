"""Incremental sync costs against the real NocoDB, in one run.

1. A change-sensor tick on a table of N messages (default 1,000,000) where 1,000 changed
   (500 edits, 500 inserts through the API): requests and seconds of the sensor's query,
   and of the whole sensor evaluation, against the baseline a sync without a watermark needs
   (reading every id and timestamp of the table to diff it).
2. The same tick's cursor size, and a tick after the overlap has passed with nothing new.
3. A single-run backfill of the ingestion assets (NocoDB pages -> validated messages ->
   conversations) from a NocoDB seeded with >= 100,000 messages over 30 days: messages/s for
   1, 7 and 30 days, to show how it scales with the number of days.
4. The reconciliation over every day of that backfill: the sensor's sweep of ids and
   versions (each table read once by key range, four fields, and the lake's copies read
   for theirs) against the per-day date-filtered counts it used to start with (3 queries
   per day and table, each a scan in NocoDB).

The big tables are written straight into NocoDB's SQLite file (the API would take many minutes
to insert a million rows); the changes go through the API, so NocoDB stamps them itself.

    .venv/bin/python benchmarks/bench_sync.py [--messages 1000000] [--backfill-conversations 15000]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster import DagsterInstance

from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion.resources import NocoDBSourceResource, SyncSettings
from analytics_assets.defs.sensor_ticks import evaluate
from analytics_assets.defs.storage.lake import LakeResource, ParquetLakeIOManager
from analytics_assets.defs.storage.leases import PartitionLeaseResource
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.sources.generator import SampleSpec, generate_sample, iter_for_nocodb
from analytics_assets.sources.nocodb import NocoDBSource
from analytics_assets.sources.seed import TABLE_COLUMNS, create_base, create_table
from analytics_assets.sources.sync_cursor import SyncCursor
from analytics_assets_tests.conftest import make_client, range_tags
from analytics_assets_tests.nocodb_server import start_nocodb

START = date(2026, 10, 1)
DAYS = 30
OVERLAP = timedelta(minutes=5)  # SyncSettings' default


def physical(client, table_id: str) -> tuple[str, dict[str, str]]:
    """NocoDB's SQLite table name and title -> column name."""
    meta = client.request("GET", f"/api/v2/meta/tables/{table_id}")
    return meta["table_name"], {c["title"]: c["column_name"] for c in meta["columns"]}


def bulk_insert(db_path: Path, table: str, columns: dict[str, str], rows) -> int:
    """Rows (dicts by title) straight into NocoDB's SQLite table, CreatedAt set as NocoDB
    writes it; returns how many."""
    con = sqlite3.connect(db_path)
    count = 0
    batch: list[dict] = []

    def flush() -> None:
        if not batch:
            return
        titles = sorted({key for row in batch for key in row})
        names = [columns[title] for title in titles]
        con.executemany(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [[row.get(title) for title in titles] for row in batch],
        )
        batch.clear()

    for row in rows:
        batch.append(row)
        count += 1
        if len(batch) == 20_000:
            flush()
    flush()
    con.commit()
    con.close()
    return count


def synthetic_messages(count: int):
    """Messages spread over 30 days; NocoDB stored each a second after it happened."""
    for index in range(count):
        day = START + timedelta(days=index % DAYS)
        minute = (index // DAYS) % 1440
        happened = f"{day.isoformat()} {minute // 60:02d}:{minute % 60:02d}:00+00:00"
        yield {
            "message_id": f"m-{index}",
            "conversation_id": f"c-{index // 7}",
            "role": "user" if index % 2 == 0 else "assistant",
            "content": "How do I change my billing address?",
            "model": "gpt-4o",
            "created_at": happened,
            "prompt_tokens": 12,
            "completion_tokens": 30,
            "CreatedAt": happened.replace(":00+00:00", ":01+00:00"),
        }


def tick_benchmark(server, messages: int) -> None:
    with make_client(server) as client:
        base_id = create_base(client, "sync_bench")
        tables = {
            name: create_table(client, base_id, name, cols) for name, cols in TABLE_COLUMNS.items()
        }
        table, columns = physical(client, tables["messages"])
    started = time.perf_counter()
    bulk_insert(server.workdir / "noco.db", table, columns, synthetic_messages(messages))
    print(f"seeded {messages:,} messages into SQLite in {time.perf_counter() - started:.1f} s")

    source_resource = NocoDBSourceResource(
        url=server.url, api_token=server.token, base_id=base_id, requests_per_second=0
    )
    defs = build_definitions(
        resources={"record_source": source_resource, "sync_settings": SyncSettings()}
    )
    defs.resolve_sensor_def("nocodb_changes_sensor")  # resolved once here, outside the timed ticks
    instance = DagsterInstance.ephemeral()

    def tick(cursor: str | None):
        began = time.perf_counter()
        result = evaluate(defs, instance, "nocodb_changes_sensor", cursor)
        return result, time.perf_counter() - began

    bootstrap, bootstrap_s = tick(None)
    print(f"first tick (bootstrap to the newest record): {bootstrap_s:.2f} s")
    time.sleep(1.1)
    with make_client(server) as client:
        client.update_records(
            tables["messages"],
            [{"Id": 1 + n * (messages // 500), "content": "edited"} for n in range(500)],
        )
        client.insert_records(
            tables["messages"],
            ({**row, "message_id": f"new-{n}"} for n, row in enumerate(
                iter_for_nocodb(list(synthetic_messages(500)))
            )),
        )  # fmt: skip

    result, tick_s = tick(bootstrap.cursor)
    with make_client(server) as client:
        source = NocoDBSource(client, base_id=base_id)
        client.table_info("messages", base_id=base_id)  # metadata cached, as in the sensor
        since = datetime.now(UTC) - timedelta(minutes=10)
        before = client.stats.requests
        scan = source.changes_since("messages", since)
        query_requests = client.stats.requests - before
        info = client.table_info("messages", base_id=base_id)
        before = client.stats.requests
        began = time.perf_counter()
        rows = sum(
            len(page.records)
            for page in client.iter_pages(
                info.id, sort="Id", fields=["Id", "CreatedAt", "UpdatedAt", "created_at"]
            )
        )
        full_s = time.perf_counter() - began
        full_requests = client.stats.requests - before
    print(
        f"tick with 1,000 changes in {messages:,} messages: {tick_s:.2f} s for the whole sensor "
        f"evaluation, {len(result.run_requests)} days requested; its messages query "
        f"{len(scan.changes):,} rows in {query_requests} requests, {scan.seconds:.2f} s"
    )
    print(
        f"baseline, every id and timestamp of the table: {rows:,} rows in {full_requests:,} "
        f"requests, {full_s:.1f} s -> tick is {full_s / tick_s:.0f}x faster, "
        f"{full_requests / max(query_requests, 1):.0f}x fewer requests"
    )
    print(f"cursor after the tick: {len(result.cursor):,} bytes")
    # The sensor's clock past the overlap: the next scan starts at the watermark's second.
    cursor = SyncCursor.from_json(result.cursor)
    later = datetime.now(UTC) + timedelta(minutes=10)
    with make_client(server) as client:
        source = NocoDBSource(client, base_id=base_id)
        for kind in ("messages",):
            table_cursor = cursor.table(kind)
            table_cursor.advance(source.changes_since(kind, table_cursor.since(OVERLAP)).changes,
                                 OVERLAP, later)  # fmt: skip
            quiet = source.changes_since(kind, table_cursor.since(OVERLAP))
    print(
        f"a quiet tick once the overlap has passed: {len(quiet.changes):,} rows in "
        f"{quiet.requests} request(s), {quiet.seconds:.2f} s"
    )


def backfill_benchmark(server, conversations: int) -> None:
    data = generate_sample(
        SampleSpec(start=START, days=DAYS, conversations=conversations, users=conversations // 8,
                   with_bad_records=False)
    )  # fmt: skip
    with make_client(server) as client:
        base_id = create_base(client, "backfill_bench")
        for name, columns in TABLE_COLUMNS.items():
            table_id = create_table(client, base_id, name, columns)
            table, mapping = physical(client, table_id)
            rows = getattr(data, name)
            stamped = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
            bulk_insert(
                server.workdir / "noco.db", table, mapping,
                ({**row, "CreatedAt": stamped} for row in iter_for_nocodb(rows)),
            )  # fmt: skip
    print(f"backfill source: {len(data.messages):,} messages, {len(data.conversations):,} "
          f"conversations over {DAYS} days")  # fmt: skip
    for days in (1, 7, 30):
        with tempfile.TemporaryDirectory() as folder:
            lake = ParquetLakeIOManager(base_url=folder)
            defs = build_definitions(
                resources={
                    "record_source": NocoDBSourceResource(
                        url=server.url, api_token=server.token, base_id=base_id,
                        requests_per_second=0,
                    ),
                    "lake": LakeResource(base_url=folder),
                    "lake_io_manager": lake,
                    "lake_and_mongo_io_manager": lake,  # the lake alone: NocoDB is measured
                    "partition_leases": PartitionLeaseResource(
                        mongo=MongoResource(), enabled=False
                    ),
                }
            )  # fmt: skip
            job = defs.resolve_implicit_global_asset_job_def().get_subset(
                asset_selection={
                    *(key for key in defs.resolve_asset_graph().get_all_asset_keys()
                      if key.path[-1] in {"nocodb_raw_pages", "conversation_messages",
                                          "conversation_headers", "processing_errors",
                                          "user_pseudonyms", "conversations"})
                }
            )  # fmt: skip
            first, last = START, START + timedelta(days=days - 1)
            began = time.perf_counter()
            result = job.execute_in_process(
                instance=DagsterInstance.ephemeral(), tags=range_tags(first, last)
            )
            seconds = time.perf_counter() - began
            assert result.success
            fetched = sum(
                1
                for message in data.messages
                if message["created_at"]
                and first.isoformat() <= message["created_at"][:10] <= last.isoformat()
            )
            print(
                f"  {days:>2} day(s): {fetched:>7,} messages in {seconds:6.1f} s -> "
                f"{fetched / seconds:7,.0f} messages/s, {seconds / days:5.2f} s per day"
            )
            if days == DAYS:
                reconcile_benchmark(server, base_id, folder)


def reconcile_benchmark(server, base_id: str, lake_folder: str) -> None:
    from analytics_assets.defs.ingestion.sensors import _lake_versions
    from analytics_assets.sources.reconcile import compare_day

    days = [START + timedelta(days=n) for n in range(DAYS)]
    lake = LakeResource(base_url=lake_folder).lake()
    with make_client(server) as client:
        source = NocoDBSource(client, base_id=base_id)
        for kind in ("conversations", "messages"):
            client.table_info(kind, base_id=base_id)  # metadata cached, as in the sensor
        before, began = client.stats.requests, time.perf_counter()
        kinds = ("conversations", "messages")
        in_source = {kind: source.versions_by_day(kind, days, 8) for kind in kinds}
        in_lake = _lake_versions(
            lake, days, {kind: in_source[kind].version_fields for kind in kinds}
        )
        sweep_s, sweep_requests = time.perf_counter() - began, client.stats.requests - before
        differing = sum(
            bool(compare_day(in_lake[k].get(d, {}), in_source[k].by_day[d],
                             in_source[k].all_ids))
            for k in kinds
            for d in days
        )  # fmt: skip
        before, began = client.stats.requests, time.perf_counter()
        for kind in ("conversations", "messages"):
            info = client.table_info(kind, base_id=base_id)
            for day in days:
                for where in source._day_queries(kind, info.columns, day):
                    next(client.iter_pages(info.id, where=where, page_size=1, fields=["Id"]))
        counts_s, counts_requests = time.perf_counter() - began, client.stats.requests - before
    print(
        f"reconciliation of all {DAYS} days: id sweep {sweep_s:.1f} s in {sweep_requests} "
        f"requests ({differing} day(s) differ); per-day counts {counts_s:.1f} s in "
        f"{counts_requests} requests -> sweep is {counts_s / sweep_s:.1f}x the counts' speed, "
        f"and exact"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--backfill-conversations", type=int, default=15_000)
    args = parser.parse_args()
    server = start_nocodb()
    try:
        tick_benchmark(server, args.messages)
        backfill_benchmark(server, args.backfill_conversations)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
