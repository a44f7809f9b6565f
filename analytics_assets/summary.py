"""The short summary the demo prints after materializing the graph."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date, timedelta

import polars as pl
from pymongo.database import Database

from analytics_assets import tables
from analytics_assets.storage.collections import DAY_FIELD
from analytics_assets.storage.lake import Lake
from analytics_assets.transforms.records import reason_without_values

SUMMARY_ASSETS = (
    tables.NOCODB_RAW_PAGES,
    tables.CONVERSATION_MESSAGES,
    tables.CONVERSATION_HEADERS,
    tables.CONVERSATIONS,
    tables.CONVERSATION_CATEGORIES,
    tables.MESSAGE_SIGNALS,
    tables.CONVERSATION_ANALYTICS,
    tables.DAILY_REPORT,
    tables.USER_ANALYTICS,
    tables.PROCESSING_ERRORS,
)


def _scan(lake: Lake, asset: str, first_day: date, last_day: date) -> pl.LazyFrame:
    days = [first_day + timedelta(days=offset) for offset in range((last_day - first_day).days + 1)]
    # The lake's own scan: it skips missing days and passes the S3 settings to polars.
    return lake.scan_days(asset, days)


def mongo_lines(
    db: Database, collections: Iterable[str], first_day: date, last_day: date
) -> list[str]:
    days = [
        (first_day + timedelta(days=offset)).isoformat()
        for offset in range((last_day - first_day).days + 1)
    ]
    lines = [f"MongoDB database {db.name!r} (the URI is not shown: it may hold credentials):"]
    for collection in sorted(set(collections)):
        count = sum(db[collection].count_documents({DAY_FIELD: day}) for day in days)
        if collection == "analytics_reports":
            count = db[collection].count_documents({})
        lines.append(f"  {collection:<24}{count:>10,}")
    return lines


def lake_summary(
    lake: Lake,
    first_day: date,
    last_day: date,
    *,
    run_id: str,
    seconds: float,
    db: Database | None = None,
    collections: Iterable[str] = (),
) -> str:
    counts = {}
    for asset in SUMMARY_ASSETS:
        frame = _scan(lake, asset, first_day, last_day)
        counts[asset] = frame.select(pl.len()).collect().item() if frame.collect_schema() else 0
    errors = _scan(lake, tables.PROCESSING_ERRORS, first_day, last_day)
    # What went wrong, not what was written: a value quoted in a reason may hold anything,
    # terminal controls included.
    reasons = (
        errors.group_by("table", reason_without_values(pl.col("reason")))
        .len()
        .sort(["len", "table", "reason"], descending=[True, False, False])
        .collect()
        if counts[tables.PROCESSING_ERRORS]
        else pl.DataFrame()
    )
    days = (last_day - first_day).days + 1
    lines = [
        f"Materialized the asset graph in run {run_id} ({seconds:.1f}s).",
        f"Partitions: {first_day} .. {last_day} ({days} days)",
        "Rows per asset:",
        *(f"  {asset:<24}{count:>10,}" for asset, count in counts.items()),
        f"Errors: {counts[tables.PROCESSING_ERRORS]} records in processing_errors (rejected, "
        "or kept with a wrong value left empty)",
        *(
            f"  {row['table']}: {row['reason']} ({row['len']})"
            for row in reasons.iter_rows(named=True)
        ),
        f"Lake: {lake.base_path} (Parquet, zstd, <asset>/day=YYYY-MM-DD/data.parquet)",
        *(mongo_lines(db, collections, first_day, last_day) if db is not None else []),
        f"Dagster instance: DAGSTER_HOME={os.environ.get('DAGSTER_HOME')}",
        "Open the UI on the same instance and definitions: make ui  (http://127.0.0.1:3000)",
    ]
    return "\n".join(lines)
