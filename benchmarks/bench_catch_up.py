"""Catching up with edits on several days: the change sensor's runs, and the across-midnight
rebuilds after them, against the real NocoDB, in one run.

A NocoDB seeded with the sample (default 10 days, 2,000 conversations; one in 20 moved to
start at 23:55, so it goes on past midnight) is backfilled twice,
into two lakes, each with its own instance and sensor cursors. Then one message is edited at
the source on each of 7 consecutive days, and both deployments catch up, each the way it is
set up:
  1. the baseline, as the change sensor asked before: one run per changed day;
  2. ours: consecutive changed days in one range run (`consecutive_runs`).
After each, `conversations_across_midnight_sensor` is ticked, and what it asks for is run, until
it asks for nothing. Prints runs, seconds of runs and the ratio, the across-midnight rebuilds
each needed, how many it would have asked for without the next-day digests (every day whose
next day was rebuilt), and whether both lakes hold the same conversations and analytics.

Only the lake is written (MongoDB is measured by `bench_mongo.py`).

    .venv/bin/python benchmarks/bench_catch_up.py [--conversations 2000] [--days 10] [--changed 7]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import polars as pl
from bench_sync import bulk_insert, physical
from dagster import DagsterInstance

from analytics_assets.definitions import build_definitions
from analytics_assets.defs.ingestion import across_midnight
from analytics_assets.defs.ingestion.resources import NocoDBSourceResource, SyncSettings
from analytics_assets.defs.partitions import RANGE_END_TAG, RANGE_START_TAG
from analytics_assets.defs.sensor_ticks import evaluate
from analytics_assets.defs.storage.lake import LakeResource, ParquetLakeIOManager
from analytics_assets.defs.storage.leases import PartitionLeaseResource
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.sources.generator import (
    SampleSpec,
    format_timestamp,
    generate_sample,
    iter_for_nocodb,
)
from analytics_assets.sources.seed import TABLE_COLUMNS, create_base, create_table
from analytics_assets_tests.conftest import days_requested, make_client, range_tags
from analytics_assets_tests.nocodb_server import start_nocodb

START = date(2026, 10, 1)
CHANGES = "nocodb_changes_sensor"


# One conversation in this many is moved to start five minutes before midnight, a message a
# minute: the sample's own conversations all end before midnight, and real ones do not.
PAST_MIDNIGHT_EVERY = 20


def with_conversations_past_midnight(data):
    """`data` with every `PAST_MIDNIGHT_EVERY`th conversation starting at 23:55 of its day,
    its messages a minute apart (those after the fifth fall on the next day)."""
    owned: dict[str, list[dict]] = {}
    for message in data.messages:
        owned.setdefault(message["conversation_id"], []).append(message)
    for conversation in data.conversations[::PAST_MIDNIGHT_EVERY]:
        day = datetime.fromisoformat(conversation["started_at"]).astimezone(UTC).date()
        start = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(
            hours=23, minutes=55
        )
        conversation["started_at"] = format_timestamp(start)
        messages = sorted(owned.get(conversation["conversation_id"], []),
                          key=lambda m: m["created_at"])  # fmt: skip
        for position, message in enumerate(messages):
            message["created_at"] = format_timestamp(start + timedelta(minutes=position))
    return data


def carried_message(data, day: date) -> str:
    """The id of a message on `day` of a conversation that started the day before."""
    started = {
        c["conversation_id"]
        for c in data.conversations
        if datetime.fromisoformat(c["started_at"]).astimezone(UTC).date() == day - timedelta(1)
    }
    return next(
        m["message_id"]
        for m in data.messages
        if m["conversation_id"] in started
        and datetime.fromisoformat(m["created_at"]).astimezone(UTC).date() == day
    )


def seed(server, data) -> tuple[str, str]:
    """The sample straight into NocoDB's SQLite tables; the base's id and messages table."""
    with make_client(server) as client:
        base_id = create_base(client, "catch_up_bench")
        tables = {}
        for name, columns in TABLE_COLUMNS.items():
            tables[name] = create_table(client, base_id, name, columns)
            table, mapping = physical(client, tables[name])
            stamped = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
            rows = iter_for_nocodb(getattr(data, name))
            bulk_insert(
                server.workdir / "noco.db", table, mapping,
                ({**row, "CreatedAt": stamped} for row in rows),
            )  # fmt: skip
    return base_id, tables["messages"]


class Deployment:
    """One lake, one instance, its sensors' cursors."""

    def __init__(self, server, base_id: str, folder: str):
        lake = ParquetLakeIOManager(base_url=folder)
        self.folder = folder
        self.defs = build_definitions(
            resources={
                "record_source": NocoDBSourceResource(
                    url=server.url, api_token=server.token, base_id=base_id,
                    requests_per_second=0,
                ),
                "sync_settings": SyncSettings(),
                "lake": LakeResource(base_url=folder),
                "lake_io_manager": lake,
                "lake_and_mongo_io_manager": lake,
                "partition_leases": PartitionLeaseResource(mongo=MongoResource(), enabled=False),
            }
        )  # fmt: skip
        self.job = self.defs.resolve_job_def("ingestion_job")
        self.instance = DagsterInstance.ephemeral()
        self.cursors: dict[str, str | None] = {}

    def tick(self, sensor: str):
        result = evaluate(self.defs, self.instance, sensor, self.cursors.get(sensor))
        self.cursors[sensor] = result.cursor
        return result.run_requests or []

    def run(self, request, *, partition_key: str | None = None, tags: dict | None = None) -> float:
        began = time.perf_counter()
        result = self.job.execute_in_process(
            instance=self.instance,
            partition_key=partition_key if partition_key else request.partition_key,
            tags=tags if tags is not None else request.tags,
            asset_selection=request.asset_selection,
        )
        assert result.success
        return time.perf_counter() - began

    def table(self, name: str) -> pl.DataFrame:
        frame = LakeResource(base_url=self.folder).lake().scan_all(name).collect()
        return frame.select(sorted(frame.columns)).sort("conversation_id")


def catch_up(deployment: Deployment, one_run_per_day: bool) -> dict:
    runs, seconds = 0, 0.0
    for request in deployment.tick(CHANGES):
        if one_run_per_day:
            plain = {k: v for k, v in request.tags.items() if k not in (RANGE_START_TAG,
                                                                      RANGE_END_TAG)}  # fmt: skip
            # As the sensor asked for them before: one run each.
            for day in days_requested([request]):
                seconds += deployment.run(request, partition_key=day, tags=plain)
                runs += 1
        else:
            seconds += deployment.run(request)
            runs += 1
    rebuilds = without_digest = 0
    while True:
        # What the sensor would ask for if it could not tell an unchanged next day, from the
        # same cursor (evaluated apart, nothing run).
        check = across_midnight._next_day_read_unchanged
        across_midnight._next_day_read_unchanged = lambda *args: False
        try:
            without_digest += len(
                evaluate(
                    deployment.defs, deployment.instance, across_midnight.SENSOR_NAME,
                    deployment.cursors.get(across_midnight.SENSOR_NAME),
                ).run_requests or []
            )  # fmt: skip
        finally:
            across_midnight._next_day_read_unchanged = check
        requests = deployment.tick(across_midnight.SENSOR_NAME)
        if not requests:
            break
        for request in requests:
            seconds += deployment.run(request)
            rebuilds += 1
    return {"runs": runs, "rebuilds": rebuilds, "without_digest": without_digest, "s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--changed", type=int, default=7)
    args = parser.parse_args()
    data = with_conversations_past_midnight(generate_sample(
        SampleSpec(start=START, days=args.days, conversations=args.conversations,
                   users=max(args.conversations // 8, 1), with_bad_records=False)
    ))  # fmt: skip
    server = start_nocodb()
    try:
        base_id, messages_table = seed(server, data)
        past_midnight = len(data.conversations[::PAST_MIDNIGHT_EVERY])
        print(f"source: {len(data.messages):,} messages, {len(data.conversations):,} "
              f"conversations over {args.days} days, {past_midnight} going on past midnight "
              f"(real NocoDB)")  # fmt: skip
        with (
            tempfile.TemporaryDirectory() as baseline,
            tempfile.TemporaryDirectory() as ours,
        ):
            deployments = {
                "baseline, one run per day": Deployment(server, base_id, baseline),
                "ours, one range run": Deployment(server, base_id, ours),
            }
            last = START + timedelta(days=args.days - 1)
            for deployment in deployments.values():
                assert deployment.job.execute_in_process(
                    instance=deployment.instance, tags=range_tags(START, last)
                ).success
                assert not deployment.tick(CHANGES)  # the cursor starts at the newest record
                assert not deployment.tick(across_midnight.SENSOR_NAME)
            time.sleep(1.1)  # NocoDB's filters compare to the second
            changed = [START + timedelta(days=1 + n) for n in range(args.changed)]
            # And one message after midnight of a conversation that started the day before
            # the first changed day: that day must be built again too.
            carried = carried_message(data, changed[0])
            with make_client(server) as client:
                first_of_day: dict[str, int] = {}
                ids: dict[str, int] = {}
                for record in client.iter_records(
                    messages_table, sort="Id", fields=["Id", "created_at", "message_id"]
                ):
                    first_of_day.setdefault(str(record["created_at"])[:10], record["Id"])
                    ids[record["message_id"]] = record["Id"]
                edits = {first_of_day[day.isoformat()]: f"edited on {day}" for day in changed}
                edits[ids[carried]] = "edited after midnight"
                client.update_records(
                    messages_table, [{"Id": key, "content": text} for key, text in edits.items()]
                )
            before = changed[0] - timedelta(days=1)
            print(f"edited one message on each of {args.changed} consecutive days, and one "
                  f"of a conversation of {before} after its midnight")  # fmt: skip
            results = {}
            for (name, deployment), per_day in zip(deployments.items(), (True, False), strict=True):
                results[name] = result = catch_up(deployment, one_run_per_day=per_day)
                print(f"  {name:<28} {result['runs']} change run(s), {result['rebuilds']} "
                      f"across-midnight rebuild(s) (without the next-day digests: "
                      f"{result['without_digest']}), {result['s']:6.1f} s of runs")  # fmt: skip
            per_day, ranged = results.values()
            print(f"ratio baseline/ours: {per_day['s'] / ranged['s']:.2f}x")
            first, second = deployments.values()
            for table in ("conversations", "conversation_analytics"):
                same = first.table(table).equals(second.table(table))
                print(f"  {table}: {'the same' if same else 'DIFFERENT'} in both lakes")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
