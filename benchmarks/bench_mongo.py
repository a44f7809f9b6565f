"""MongoDB writes on the embedded server, one run.

1. Partition replace vs a bare `insert_many`, on the server the local deployment embeds
   (`storage/embedded_server.py`: nx-27017 with each insert command committed once, and the
   day index `index_days_as_dates` adds), on the same documents:
   - baseline: `insert_many(ordered=False)` into an empty collection set up like ours;
   - ours, first write: `replace_frame` into an empty day (validation, inserts, stale delete);
   - ours, replace: `replace_frame` over the day it already holds (what a re-run does).
   Each of `--rounds` rounds on a fresh server, the baseline first in every other one.
   Prints documents/s (median, and each round) and the ratio against the baseline (target
   >= 0.9).
2. A range backfill's mirror: the messages spread over `--days` days and written a day at a
   time into an empty collection, as `mongo_mirror` does:
   - baseline: plain nx-27017 (what the deployment ran before), no day index;
   - plain nx-27017 with the day index;
   - the deployment's server with the day index.
   Prints documents/s and the ratio against the baseline.
3. Reads of the same messages from the same files (written once, day-indexed), by each
   server started afresh on them, in alternating order, twice each:
   - a page: 51 documents by `_id` (`$in`), as the read API fetches a page of conversations;
   - a day: every document of one day, in batches of 5,000 (the PII check of the copies
     reads each day so, its text fields only);
   plain nx-27017 (baseline) against the deployment's server, which sends replies without
   rebuilding them (`embedded_server.bson_ready`). Prints reads/s and the ratio.

    .venv/bin/python benchmarks/bench_mongo.py [--messages 100000] [--days 60] [--reads-only]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from pymongo import MongoClient
from pymongo.database import Database

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.storage.collections import COLLECTIONS, DAY_FIELD
from analytics_assets.storage.embedded import index_days_as_dates
from analytics_assets.storage.migrations import migrate
from analytics_assets.storage.mongo import frame_to_documents, replace_frame
from analytics_assets_tests.nocodb_server import free_port

DAY = date(2026, 11, 1)
SPEC = COLLECTIONS["conversation_messages"]


def message_frame(count: int, days: int = 1) -> pl.DataFrame:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    per_day = -(-count // days)
    return pl.DataFrame(
        {
            "message_id": [f"msg-{n:07d}" for n in range(count)],
            "conversation_id": [f"conv-{n // 7:06d}" for n in range(count)],
            "role": ["user", "assistant"] * (count // 2) + ["user"] * (count % 2),
            "content": ["How do I share a dashboard with a client? Thanks!"] * count,
            "model": ["gpt-4o"] * count,
            "created_at": [start + timedelta(milliseconds=n * 800) for n in range(count)],
            "prompt_tokens": [120] * count,
            "completion_tokens": [48] * count,
            "latency_ms": [812.5] * count,
            "feedback": [None] * count,
            "day": [DAY + timedelta(days=n // per_day) for n in range(count)],
        }
    )


@contextlib.contextmanager
def server(*, deployment: bool, data_dir: Path | None = None) -> Iterator[tuple[Database, Path]]:
    """A server on loopback: the deployment's entry point, or plain nx-27017; on fresh files
    (removed afterwards), or on `data_dir`'s (kept)."""
    keep = data_dir is not None
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="bench-mongo-"))
    port = free_port()
    if deployment:
        command = [sys.executable, "-m", "analytics_assets.storage.embedded_server"]
    else:
        command = [shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")]
    process = subprocess.Popen(
        [*command, "--data-dir", str(data_dir), "--port", str(port),
         "--log-file", str(data_dir / "log"), "--pid-file", str(data_dir / "pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = MongoClient(f"mongodb://127.0.0.1:{port}", tz_aware=True, tzinfo=UTC)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.admin.command("ping")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield client["bench"], data_dir
    finally:
        process.terminate()
        process.wait(timeout=10)
        if not keep:
            shutil.rmtree(data_dir, ignore_errors=True)


def make_collection(db: Database, name: str, data_dir: Path, *, day_indexed: bool) -> None:
    """Set up like the deployment's messages: validator and indexes (index upkeep is the
    server's cost either way)."""
    db.create_collection(name, validator={"$jsonSchema": SPEC.json_schema})
    db[name].create_indexes(SPEC.indexes)
    if day_indexed:
        index_days_as_dates(data_dir, db.name, [name], DAY_FIELD)


def partition_replace(messages: int, rounds: int) -> None:
    """Each round on a fresh server, the baseline first in every other round: the second
    writer finds the first's 100,000 documents in the same files, which alone moved the
    ratio by 0.1 between runs."""
    frame = message_frame(messages)
    rates: dict[str, list[float]] = {"bare": [], "empty": [], "existing": []}
    reports = {}
    # This process's CPU time inside ours (validation, conversion, BSON), without the
    # server's: steadier than the wall clock, which the server's disk writes make noisy.
    client_cpu: dict[str, list[float]] = {"empty": [], "existing": []}
    for round_number in range(rounds):
        with server(deployment=True) as (db, data_dir):
            migrate(db)
            index_days_as_dates(data_dir, db.name, [SPEC.name], DAY_FIELD)
            make_collection(db, "baseline", data_dir, day_indexed=True)
            started = time.perf_counter()
            baseline_documents = frame_to_documents(frame, SPEC)
            convert_s = time.perf_counter() - started

            def bare(documents=baseline_documents, db=db) -> None:
                started = time.perf_counter()
                db["baseline"].insert_many(documents, ordered=False)
                rates["bare"].append(messages / (time.perf_counter() - started))

            def ours(db=db, round_number=round_number) -> None:
                # Ours starts from the frame, as the IO manager does: validation and
                # conversion are inside its time, while the baseline gets its documents
                # ready-made.
                for kind in ("empty", "existing"):
                    run_id = f"run-{round_number}-{kind}"
                    cpu_started = time.process_time()
                    report = replace_frame(
                        db[SPEC.name], frame, [DAY.isoformat()], spec=SPEC, run_id=run_id
                    )
                    client_cpu[kind].append(time.process_time() - cpu_started)
                    assert report.written == messages
                    rates[kind].append(messages / report.seconds)
                    reports[kind] = report
                assert db[SPEC.name].count_documents({}) == messages

            for write in (bare, ours) if round_number % 2 == 0 else (ours, bare):
                write()

    baseline_rate = statistics.median(rates["bare"])
    print(
        f"{messages:,} messages, one day, the deployment's server, {rounds} rounds on fresh "
        f"files (median, then each round); frame -> documents {convert_s:.2f}s (outside the "
        f"baseline's time, inside ours)"
    )
    print(f"  bare insert_many          : {baseline_rate:,.0f} documents/s "
          f"({', '.join(f'{rate:,.0f}' for rate in rates['bare'])})")  # fmt: skip
    for kind, name in (("empty", "replace, empty day"), ("existing", "replace, existing day")):
        rate = statistics.median(rates[kind])
        print(
            f"  {name:<26}: {rate:,.0f} documents/s "
            f"({', '.join(f'{each:,.0f}' for each in rates[kind])}; "
            f"{reports[kind].batches} batches, {reports[kind].deleted} stale deleted), "
            f"ratio {rate / baseline_rate:.2f} (target >= 0.9); client CPU "
            f"{statistics.median(client_cpu[kind]):.2f}s"
        )


def day_by_day(messages: int, days: int) -> None:
    frame = message_frame(messages, days)
    rates = {}
    for label, deployment, day_indexed in (
        ("plain nx-27017, no day index (before)", False, False),
        ("plain nx-27017, day index", False, True),
        ("the deployment's server, day index", True, True),
    ):
        with server(deployment=deployment) as (db, data_dir):
            make_collection(db, SPEC.name, data_dir, day_indexed=day_indexed)
            started = time.perf_counter()
            for (day,), day_frame in frame.group_by(DAY_FIELD, maintain_order=True):
                replace_frame(db[SPEC.name], day_frame, [day.isoformat()], spec=SPEC, run_id="r")
            rates[label] = messages / (time.perf_counter() - started)
            assert db[SPEC.name].count_documents({}) == messages
    print(f"{messages:,} messages over {days} days, a day at a time into an empty collection:")
    baseline = next(iter(rates.values()))
    for label, rate in rates.items():
        print(f"  {label:<40}: {rate:,.0f} documents/s, ratio {rate / baseline:.2f}")


def reads(messages: int, days: int, seconds: float = 5.0, rounds: int = 2) -> None:
    """Both servers on the very same files (written once, by the deployment's server), each
    started afresh for every measurement, in alternating order, `rounds` times each."""
    documents = frame_to_documents(message_frame(messages, days), SPEC)
    ids = [document["_id"] for document in documents]
    day_names = sorted({document[DAY_FIELD] for document in documents})
    pages = [random.Random(seed).sample(ids, 51) for seed in range(50)]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-mongo-reads-"))
    labels = {False: "plain nx-27017 (baseline)", True: "the deployment's server"}
    measured: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    try:
        with server(deployment=True, data_dir=data_dir) as (db, _):
            make_collection(db, SPEC.name, data_dir, day_indexed=True)
            db[SPEC.name].insert_many(documents, ordered=False)
        for round_number in range(rounds):
            for deployment in (False, True) if round_number % 2 == 0 else (True, False):
                with server(deployment=deployment, data_dir=data_dir) as (db, _):
                    measured[deployment].append(
                        read_rates(db[SPEC.name], pages, day_names, messages, seconds)
                    )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"reads of {messages:,} messages over {days} days, both servers on the same files "
          f"({rounds} alternating rounds each, a fresh start each):")  # fmt: skip
    means = {
        deployment: tuple(statistics.fmean(values) for values in zip(*rates, strict=True))
        for deployment, rates in measured.items()
    }
    base_pages, base_days = means[False]
    for deployment, (page_rate, day_rate) in means.items():
        each = ", ".join(f"{page:,.0f}" for page, _ in measured[deployment])
        print(
            f"  {labels[deployment]:<27}: a page of 51 by _id {page_rate:,.0f}/s ({each}; ratio "
            f"{page_rate / base_pages:.2f}); each day whole {day_rate:,.0f} documents/s "
            f"(ratio {day_rate / base_days:.2f})"
        )


def read_rates(collection, pages, day_names, messages: int, seconds: float):
    """(pages of 51 by `_id` per second, documents per second reading each day whole)."""
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        assert len(list(collection.find({"_id": {"$in": pages[count % len(pages)]}}))) == 51
        count += 1
    page_rate = count / (time.perf_counter() - started)
    read, started = 0, time.perf_counter()
    for day in day_names:
        read += sum(1 for _ in collection.find({DAY_FIELD: day}).batch_size(5_000))
    assert read == messages
    return page_rate, read / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--reads-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="of the partition replace")
    args = parser.parse_args()
    if not args.reads_only:
        partition_replace(args.messages, args.rounds)
        day_by_day(args.messages, args.days)
    reads(args.messages, args.days)


if __name__ == "__main__":
    main()
