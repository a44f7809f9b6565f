"""The daily report from N messages in the lake, and the monthly report from 30 daily reports.

For each size (default 10^5, 10^6, 10^7 messages in one day), a child process writes one
lake day of messages, conversations and categories (not timed), and another builds the day's
conversation analytics and daily report from it (timed, with its own peak RSS):
  - ours: the assets' path, polars' lazy engine over lake scans (only the columns and rows the
    query needs are read);
  - baseline: the same functions on eagerly read whole files (`pl.read_parquet`).
Then the monthly report is combined from 30 daily report partitions, reading only those
(never raw messages), and its bytes read are compared with the raw messages' bytes.

    .venv/bin/python benchmarks/bench_reports.py [--sizes 100000 1000000 10000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.analytics.reports import REPORT_COLUMNS, combine, daily_report
from analytics_assets.analytics.scores import conversation_analytics
from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets.transforms.timestamps import TIMESTAMP_DTYPE

DAY = date(2026, 11, 1)
MESSAGES_PER_CONVERSATION = 7
TOPICS = ["billing", "account", "bug", "how_to", "pricing", "integration", "features", "other"]
INTENTS = ["question", "troubleshooting", "complaint", "request", "feedback", "other"]
SENTIMENTS = ["positive", "neutral", "negative"]
LANGUAGES = ["en", "es", "de", "fr", "pt", "it", "ja", "zh"]
MODELS = ["gpt-4o", "claude-3-5-sonnet", "llama-3-70b"]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_day(lake_dir: str, rows: int) -> None:
    """One lake day: the sample's real messages repeated to `rows`, in conversations of 7,
    their conversations (the pipeline's own transform) and categories spread over labels."""
    from analytics_assets.transforms.conversations import build_conversations
    from benchmarks.bench_lake import messages

    lake = ParquetLakeIOManager(base_url=lake_dir).lake()
    seconds_into_day = pl.int_range(pl.len()) * 86_400 // pl.len()
    frame = messages(rows).with_columns(
        pl.lit(DAY).alias("day"),
        # Conversations of seven consecutive messages, spread over the day.
        (pl.lit(datetime(2026, 11, 1, tzinfo=UTC)) + pl.duration(seconds=seconds_into_day))
        .cast(TIMESTAMP_DTYPE)
        .alias("created_at"),
    )
    conversation_count = frame["conversation_id"].n_unique()
    index = pl.int_range(pl.len())
    headers = (
        frame.group_by("conversation_id")
        .agg(pl.col("created_at").min().alias("started_at"))
        .sort("conversation_id")
        .with_columns(
            pl.format("user-{}", index % max(conversation_count // 3, 1)).alias("user_id"),
            pl.lit(None, pl.String()).alias("model"),
            pl.lit("web").alias("channel"),
            pl.when(index % 4 == 0).then((index % 5 + 1).cast(pl.Int8)).alias("rating"),
            pl.lit(DAY).alias("day"),
        )
    )
    conversations = build_conversations(headers, frame)

    def label(values: list[str], salt: int) -> pl.Expr:
        return pl.lit(pl.Series(values)).get((index * 7919 + salt) % len(values))

    categories = conversations.select("conversation_id").with_columns(
        label(TOPICS, 1).alias("topic"),
        label(INTENTS, 2).alias("intent"),
        label(LANGUAGES, 3).alias("language"),
        label(SENTIMENTS, 4).alias("sentiment_opening"),
        label(SENTIMENTS, 5).alias("sentiment"),
        pl.lit(DAY).alias("day"),
    )
    for asset, data in (
        ("conversation_messages", frame),
        ("conversations", conversations),
        ("conversation_categories", categories),
    ):
        lake.write_day(asset, DAY, data)


def build_day(lake_dir: str, mode: str) -> dict:
    """Conversation analytics and the daily report for DAY; `mode` lazy (ours) or eager."""
    lake = ParquetLakeIOManager(base_url=lake_dir).lake()
    started = time.perf_counter()
    if mode == "lazy":
        scan = {
            name: lake.scan_days(name, [DAY])
            for name in ("conversation_messages", "conversations", "conversation_categories")
        }
        messages = scan["conversation_messages"]
        analytics = conversation_analytics(
            scan["conversations"].collect(), messages, scan["conversation_categories"].collect()
        )
        message_count = messages.select(pl.len()).collect().item()
    else:
        read = {
            name: pl.read_parquet(str(lake.day_file(name, DAY)))
            for name in ("conversation_messages", "conversations", "conversation_categories")
        }
        messages = read["conversation_messages"]
        analytics = conversation_analytics(
            read["conversations"], messages, read["conversation_categories"]
        )
        message_count = messages.height
    scored = time.perf_counter()
    report = daily_report(DAY, analytics.select(REPORT_COLUMNS), messages=message_count, errors=0)
    finished = time.perf_counter()
    return {
        "messages": message_count,
        "conversations": report["conversations"].item(),
        "analytics_s": scored - started,
        "report_s": finished - scored,
        "total_s": finished - started,
        "peak_rss_mb": peak_rss_mb(),
    }


def monthly(lake_dir: str) -> dict:
    """30 daily report partitions (copies of the day's report), combined into a month."""
    lake = ParquetLakeIOManager(base_url=lake_dir).lake()
    analytics = conversation_analytics(
        *(
            lake.scan_days(name, [DAY])
            for name in ("conversations", "conversation_messages", "conversation_categories")
        )
    )
    day_report = daily_report(DAY, analytics.select(REPORT_COLUMNS), messages=0, errors=0)
    days = [DAY + timedelta(days=offset) for offset in range(30)]
    for day in days:
        lake.write_day("daily_report", day, day_report.with_columns(pl.lit(day).alias("day")))
    report_bytes = sum(lake.day_file("daily_report", day).stat().st_size for day in days)
    raw_bytes = lake.day_file("conversation_messages", DAY).stat().st_size * 30
    started = time.perf_counter()
    month = combine("monthly", "2026-11", DAY, lake.scan_days("daily_report", days).collect())
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "report_bytes": report_bytes,
        "raw_bytes_for_30_days": raw_bytes,
        "conversations": month["conversations"].item(),
    }


def child(command: list[str]) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *command], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise SystemExit(f"{command} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        action, lake_dir, *rest = args.child
        if action == "write":
            write_day(lake_dir, int(rest[0]))
            print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
        elif action == "build":
            print(json.dumps(build_day(lake_dir, rest[0])))
        else:
            print(json.dumps(monthly(lake_dir)))
        return

    print(f"{'messages':>11} {'mode':>6} {'total s':>8} {'µs/msg':>7} {'analytics s':>11} "
          f"{'report s':>8} {'peak MB':>8}")  # fmt: skip
    per_message = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as lake_dir:
            child(["write", lake_dir, str(size)])
            results = {mode: child(["build", lake_dir, mode]) for mode in ("lazy", "eager")}
            for mode, r in results.items():
                print(
                    f"{r['messages']:>11,} {mode:>6} {r['total_s']:8.2f} "
                    f"{r['total_s'] / r['messages'] * 1e6:7.2f} {r['analytics_s']:11.2f} "
                    f"{r['report_s']:8.3f} {r['peak_rss_mb']:8.0f}"
                )
            lazy, eager = results["lazy"], results["eager"]
            per_message[size] = lazy["total_s"] / lazy["messages"]
            print(
                f"{'':>11} ratio eager/lazy: time {eager['total_s'] / lazy['total_s']:.2f}, "
                f"peak memory {eager['peak_rss_mb'] / lazy['peak_rss_mb']:.2f}"
            )
            if size == 1_000_000 or (size == args.sizes[-1] and 1_000_000 not in args.sizes):
                month = child(["monthly", lake_dir])
                print(
                    f"monthly report from 30 daily partitions: {month['seconds'] * 1000:.1f} ms, "
                    f"read {month['report_bytes'] / 1e3:.0f} kB of daily reports vs "
                    f"{month['raw_bytes_for_30_days'] / 1e6:.0f} MB of raw messages for 30 such "
                    f"days ({month['conversations']:,} conversations)"
                )
    smallest = min(per_message)
    print(
        "time per message relative to the smallest size: "
        + ", ".join(
            f"{size:,}: {per_message[size] / per_message[smallest]:.2f}" for size in per_message
        )
    )


if __name__ == "__main__":
    main()
