"""A backfill's fetch under faults: the real NocoDB behind the fault-injecting proxy, 30 % of
requests faulted at random (429 with and without Retry-After, 500/502/503, a stall of 40 s,
a reset, a truncated body), against the clean fetch of the same rows, in one run.

Both tables are read the way a multi-day backfill reads them (at the same time, in key-range
shards, 8 requests in flight in all, the deployment's default).
Measured twice over the same fault plan: with the client's policy (a slow read gets a twin
after 3x the recent p95 answer time, at least 1 s, or 3 s before answers are known, up to
three copies; a read timeout from recent answer times, at least 10 s; a 429 without
Retry-After retried after 1 s, doubling with each 429) and with the previous one (a fixed
30 s timeout, 30 s after every such 429) as the baseline.
Prints seconds, the ratio to the clean fetch, and checks that every record arrived once.

    .venv/bin/python benchmarks/bench_faults.py [--conversations 15000] [--fault-rate 0.3]
        [--seeds 8,9,10]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.nocodb.client import NocoDBClient, ReadTimeout, RetryPolicy
from analytics_assets.sources.generator import SampleSpec, generate_sample
from analytics_assets.sources.nocodb import NocoDBSource
from analytics_assets.sources.seed import seed_nocodb
from analytics_assets_tests.fault_proxy import FAULTS, FaultProxy
from analytics_assets_tests.nocodb_server import start_nocodb

STALL_S = 40.0
# As many requests in flight as a deployment's default (NocoDBSourceResource.fetch_workers).
WORKERS = 8


def fetch(url: str, token: str, base_id: str, days: list, previous_policy: bool) -> tuple:
    retry = RetryPolicy(throttle_first_wait_s=30.0) if previous_policy else RetryPolicy()
    with NocoDBClient(url, token, requests_per_second=0, retry=retry) as client:
        if previous_policy:
            client.read_timeout = ReadTimeout(30.0, floor_s=30.0)
        source = NocoDBSource(client, base_id=base_id)
        started = time.perf_counter()
        # Both tables at once, as `nocodb_raw_pages` reads a range.
        ranges = source.fetch_ranges(["conversations", "messages"], days, workers=WORKERS)
        records = {
            kind: sorted(
                record_id
                for result in by_day.values()
                for record_id in result.frame["record_id"].to_list()
            )
            for kind, by_day in ranges.items()
        }
        return time.perf_counter() - started, records, client.stats.as_dict()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=15000)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument(
        "--seeds",
        default="",
        help="more fault plans (comma-separated seeds) for the current policy after seed 7: "
        "the ratio to the clean fetch moves with which requests meet the faults",
    )
    args = parser.parse_args()
    server = start_nocodb()
    try:
        data = generate_sample(SampleSpec(conversations=args.conversations))
        with NocoDBClient(server.url, server.token, requests_per_second=0) as client:
            base = seed_nocodb(client, data, base_title="faults").base_id
        # The sample's days and today (records without an event time are stored today).
        days = [*data.days(), datetime.now(UTC).date()]
        rate = f"fault rate {args.fault_rate:.0%}, stalls of {STALL_S:.0f} s"
        print(f"seeded {len(data.messages):,} messages, "
              f"{len(data.conversations):,} conversations; {rate}")  # fmt: skip
        clean_s, expected, _ = fetch(server.url, server.token, base, days, False)
        print(f"clean fetch: {clean_s:.1f} s")
        more = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
        runs = [("previous policy (baseline)", True, 7), ("current policy", False, 7),
                *((f"current policy, seed {seed}", False, seed) for seed in more)]  # fmt: skip
        for name, previous, seed in runs:
            rng = random.Random(seed)
            plan = (rng.choice(FAULTS) if rng.random() < args.fault_rate else None
                    for _ in iter(int, 1))  # fmt: skip
            with FaultProxy(server.url, plan, slow_response_s=STALL_S) as proxy:
                seconds, got, stats = fetch(proxy.url, server.token, base, days, previous)
            assert got == expected, f"{name}: records lost or duplicated"
            print(f"{name:<28} {seconds:6.1f} s  {seconds / clean_s:5.1f}x the clean fetch  "
                  f"faults {sum(proxy.injected.values())}  retries {stats['retries']}  "
                  f"waited {stats['retry_wait_s']:.0f} s; every record once")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
