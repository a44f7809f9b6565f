"""Documents/s for a 100,000-message partition replace vs a bare `insert_many`, one run.

Starts nx-27017 (the MongoDB wire-protocol server the local deployment embeds) on loopback,
then, on the same documents:
  - baseline: `insert_many(ordered=False)` into an empty collection;
  - ours, first write: `replace_days` into an empty day (validation + upserts + stale delete);
  - ours, replace: `replace_days` over the day it already holds (what a re-run does).
Prints documents/s and the ratio against the baseline (target >= 0.8).

    .venv/bin/python benchmarks/bench_mongo.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
from pymongo import MongoClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.storage.collections import COLLECTIONS
from analytics_assets.storage.migrations import migrate
from analytics_assets.storage.mongo import frame_to_documents, replace_frame
from analytics_assets_tests.nocodb_server import free_port

DAY = date(2026, 11, 1)


def message_frame(count: int) -> pl.DataFrame:
    start = datetime(2026, 11, 1, tzinfo=UTC)
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
            "day": [DAY] * count,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args()
    spec = COLLECTIONS["conversation_messages"]
    data_dir = Path(tempfile.mkdtemp(prefix="bench-mongo-"))
    port = free_port()
    executable = shutil.which("nx-27017") or str(Path(sys.executable).parent / "nx-27017")
    server = subprocess.Popen(
        [executable, "--data-dir", str(data_dir), "--port", str(port),
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
        frame = message_frame(args.messages)
        db = client["bench"]
        migrate(db)

        started = time.perf_counter()
        baseline_documents = frame_to_documents(frame, spec)
        convert_s = time.perf_counter() - started
        # The baseline collection is set up like ours (validator and indexes): index upkeep
        # is the server's cost either way, and would otherwise flatter the baseline.
        db.create_collection("baseline", validator={"$jsonSchema": spec.json_schema})
        db["baseline"].create_indexes(spec.indexes)
        started = time.perf_counter()
        db["baseline"].insert_many(baseline_documents, ordered=False)
        baseline_s = time.perf_counter() - started

        # Ours starts from the frame, as the IO manager does: validation and conversion are
        # inside its time, while the baseline gets its documents ready-made.
        first = replace_frame(db[spec.name], frame, [DAY.isoformat()], spec=spec, run_id="run-1")
        replaced = replace_frame(db[spec.name], frame, [DAY.isoformat()], spec=spec, run_id="run-2")
        assert db[spec.name].count_documents({}) == args.messages
        assert first.written == replaced.written == args.messages

        baseline_rate = args.messages / baseline_s
        print(
            f"{args.messages:,} messages, one day; frame -> documents {convert_s:.2f}s "
            "(outside the baseline's time, inside ours)"
        )
        print(f"bare insert_many          : {baseline_rate:,.0f} documents/s")
        for name, report in (("replace, empty day", first), ("replace, existing day", replaced)):
            rate = args.messages / report.seconds
            print(
                f"{name:<26}: {rate:,.0f} documents/s ({report.batches} batches, "
                f"{report.deleted} stale deleted), ratio {rate / baseline_rate:.2f} (target >= 0.8)"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
