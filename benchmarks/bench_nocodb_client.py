"""NocoDB client throughput against a bare httpx loop over the same pages, in one run.

Starts the real NocoDB (scripts/nocodb/install.sh installs it), seeds it with the sample
generator (>= 50,000 messages), then reads the whole messages table several times with each
reader, alternating, and prints rows/s and each reader's ratio to the bare loop (target
>= 0.9): the client's paging; the record source a backfill uses, day by day (two
date-filtered queries per day, 4 at a time) and as one range (key-range shards read at once,
split by day locally).

    .venv/bin/python benchmarks/bench_nocodb_client.py [--conversations 7500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.nocodb.client import NocoDBClient
from analytics_assets.sources.generator import SampleSpec, generate_sample
from analytics_assets.sources.nocodb import NocoDBSource
from analytics_assets.sources.seed import seed_nocodb
from analytics_assets_tests.nocodb_server import start_nocodb

PAGE_SIZE = 1000


def bare_httpx(url: str, token: str, table_id: str) -> int:
    """The floor: one GET per page, JSON decoded, no pacing, retries or bookkeeping."""
    rows = 0
    offset = 0
    with httpx.Client(base_url=url, headers={"xc-token": token}, timeout=60) as http:
        while True:
            body = http.get(
                f"/api/v2/tables/{table_id}/records",
                params={"limit": PAGE_SIZE, "offset": offset, "sort": "Id"},
            ).json()
            rows += len(body["list"])
            offset += len(body["list"])
            if body["pageInfo"]["isLastPage"] or not body["list"]:
                return rows


def our_client(url: str, token: str, table_id: str) -> int:
    with NocoDBClient(url, token, requests_per_second=0) as client:
        return sum(
            len(page.records)
            for page in client.iter_pages(table_id, sort="Id", page_size=PAGE_SIZE)
        )


def backfill_days(data) -> list:
    """The sample's days and today (records without an event time are stored today)."""
    return [*data.days(), datetime.now(UTC).date()]


def source_day_by_day(url: str, token: str, base_id: str, days: list) -> int:
    from concurrent.futures import ThreadPoolExecutor

    with NocoDBClient(url, token, requests_per_second=0) as client:
        source = NocoDBSource(client, base_id=base_id)
        with ThreadPoolExecutor(4) as pool:
            frames = pool.map(lambda day: source.fetch_day("messages", day).frame, days)
            return sum(frame.height for frame in frames)


def source_range(url: str, token: str, base_id: str, days: list) -> int:
    with NocoDBClient(url, token, requests_per_second=0) as client:
        ranged = NocoDBSource(client, base_id=base_id).fetch_range("messages", days, workers=8)
        return sum(result.frame.height for result in ranged.values())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=7500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    server = start_nocodb()
    try:
        data = generate_sample(SampleSpec(conversations=args.conversations))
        started = time.perf_counter()
        with NocoDBClient(server.url, server.token, requests_per_second=0) as client:
            seeded = seed_nocodb(client, data, base_title="benchmark")
        table_id = seeded.table_ids["messages"]
        print(
            f"seeded {len(data.messages):,} messages and {len(data.conversations):,} "
            f"conversations in {time.perf_counter() - started:.1f}s"
        )
        days = backfill_days(data)
        base = seeded.base_id
        readers = {
            "bare httpx loop": bare_httpx,
            "NocoDBClient": our_client,
            "source, day by day": lambda url, token, _: source_day_by_day(url, token, base, days),
            "source, one range": lambda url, token, _: source_range(url, token, base, days),
        }
        timings: dict[str, list[float]] = {name: [] for name in readers}
        counts: dict[str, int] = {}
        bare_httpx(server.url, server.token, table_id)  # warm NocoDB's caches once
        for _ in range(args.repeats):
            for name, reader in readers.items():
                started = time.perf_counter()
                counts[name] = reader(server.url, server.token, table_id)
                timings[name].append(time.perf_counter() - started)
        # The table readers see every row; the source keeps the rows of the backfill's days
        # (the sample has a few records dated outside them), the same ones both ways.
        assert counts["bare httpx loop"] == counts["NocoDBClient"], counts
        assert counts["source, day by day"] == counts["source, one range"], counts
        rates = {name: counts[name] / statistics.median(times) for name, times in timings.items()}
        bare = rates["bare httpx loop"]
        for name, rate in rates.items():
            print(f"{name:<20} {counts[name]:,} rows  median {rate:,.0f} rows/s  "
                  f"ratio to bare {rate / bare:.3f}")  # fmt: skip
        print("target: ratio >= 0.9")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
