"""Incremental sync: a sensor that materializes the days NocoDB changed, and a periodic
reconciliation that catches what a change feed cannot see (deletes, records older than the
overlap window). Both request `ingestion_job` runs for whole days: a day is always rebuilt
from the source, so a re-run converges to the same result and a deleted record disappears.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import polars as pl
from dagster import (
    AssetObservation,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from analytics_assets import tables
from analytics_assets.defs.ingestion.jobs import INGESTION_JOB
from analytics_assets.defs.ingestion.resources import RecordSourceResource, SyncSettings
from analytics_assets.defs.partitions import TRIGGER_TAG, daily_partitions
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.privacy.erasure import is_tombstoned, tombstones
from analytics_assets.sources.sync_cursor import SyncCursor, window_fingerprints
from analytics_assets.storage.lake import Lake

SYNC_TABLES = ("conversations", "messages")
# A table found empty on the first tick: everything that appears later is a change.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_IDS_SHOWN = 50


def _log(context: SensorEvaluationContext, event: str, **fields: object) -> None:
    # One JSON line per event: counts and timings only, never the URL or token.
    context.log.info(json.dumps({"event": event, **fields}, default=str, sort_keys=True))


def _partition_days() -> tuple[date, date | None]:
    first = date.fromisoformat(daily_partitions.get_first_partition_key())
    last_key = daily_partitions.get_last_partition_key()
    return first, date.fromisoformat(last_key) if last_key else None


@sensor(
    name="nocodb_changes_sensor",
    job_name=INGESTION_JOB,
    minimum_interval_seconds=300,
    default_status=DefaultSensorStatus.STOPPED,
    description="Materializes the days whose records NocoDB created or edited since the last "
    "tick (watermark on UpdatedAt, else CreatedAt, with an overlap). Today's changes wait "
    "until the day's partition exists. Replaces the daily schedule when on.",
)
def nocodb_changes_sensor(
    context: SensorEvaluationContext,
    record_source: RecordSourceResource,
    sync_settings: SyncSettings,
) -> SensorResult | SkipReason:
    settings = sync_settings
    overlap = timedelta(minutes=settings.overlap_minutes)
    cursor = SyncCursor.from_json(context.cursor)
    # The sensor's clock only measures how long a watermark has stood (sync_cursor.py).
    now = datetime.now(UTC)
    touched: dict[date, Counter] = {}
    # Per day, what the scans returned for it (a fingerprint per table): with the cursor
    # the tick started from, it names the runs, so evaluating the same tick again (a
    # failed cron tick, a daemon that died while submitting) asks for the same run keys.
    returned: dict[date, dict[str, str]] = {}
    with record_source.open() as source:
        if not source.supports_changes:
            return SkipReason(f"{source.describe()} has no change feed; use the daily schedule.")
        for kind in SYNC_TABLES:
            table = cursor.table(kind)
            if table.watermark is None:
                started = time.perf_counter()
                latest = source.latest_version(kind) if settings.bootstrap == "latest" else None
                table.start_at(latest or BEGINNING, overlap, now)
                if latest is not None:
                    # Remember what the overlap will return again, as already loaded.
                    scan = source.changes_since(kind, table.since(overlap))
                    table.advance(scan.changes, overlap, now)
                _log(context, "sync_bootstrap", table=kind, watermark=table.watermark,
                     seconds=round(time.perf_counter() - started, 3))  # fmt: skip
                if settings.bootstrap == "latest":
                    continue
            scan = source.changes_since(kind, table.since(overlap))
            for day, fingerprint in window_fingerprints(scan.changes).items():
                returned.setdefault(date.fromisoformat(day), {})[kind] = fingerprint
            changed_days = table.advance(scan.changes, overlap, now)
            for day, count in changed_days.items():
                touched.setdefault(day, Counter())[kind] += count
            _log(context, "sync_changes", table=kind, returned=len(scan.changes),
                 fresh=sum(changed_days.values()), days=len(changed_days),
                 requests=scan.requests, seconds=round(scan.seconds, 3),
                 watermark=table.watermark)  # fmt: skip

    first_day, last_day = _partition_days()
    candidates = set(touched) | cursor.pending_days
    ready = sorted(d for d in candidates if last_day and first_day <= d <= last_day)
    cursor.pending_days = {d for d in candidates if last_day is None or d > last_day}
    before_start = sorted(d for d in candidates if d < first_day)
    if before_start:
        context.log.warning(
            f"{len(before_start)} changed day(s) before the first partition ({first_day}) are "
            f"ignored: {[d.isoformat() for d in before_start[:10]]}"
        )

    def run_key(day: date) -> str:
        # Not the new cursor: it holds the sensor's clock, so the same tick evaluated twice
        # named its runs differently and every day ran again.
        what = json.dumps([context.cursor, day.isoformat(), returned.get(day, {})], sort_keys=True)
        return f"nocodb-changes:{day.isoformat()}:{hashlib.sha256(what.encode()).hexdigest()[:12]}"

    run_requests = [
        RunRequest(
            run_key=run_key(day),
            partition_key=day.isoformat(),
            tags={TRIGGER_TAG: "nocodb_changes_sensor"},
        )
        for day in ready
    ]
    observations = [
        AssetObservation(
            asset_key=tables.NOCODB_RAW_PAGES,
            partition=day.isoformat(),
            metadata={
                **{f"changed_{kind}": touched.get(day, Counter())[kind] for kind in SYNC_TABLES},
                "requested_by": "nocodb_changes_sensor",
            },
        )
        for day in ready
    ]
    pending = sorted(d.isoformat() for d in cursor.pending_days)
    return SensorResult(
        run_requests=run_requests,
        asset_events=observations,
        cursor=cursor.to_json(),
        skip_reason=None
        if run_requests
        else f"No changed day to materialize (waiting for their partitions: {pending})",
    )


def _lake_ids(lake: Lake, days: list[date]) -> dict[str, dict[date, set[str]]]:
    """Per table, the record ids the lake holds for each day: one scan of two columns."""
    ids: dict[str, dict[date, set[str]]] = {
        kind: {day: set() for day in days} for kind in SYNC_TABLES
    }
    if not days:
        return ids
    frame = (
        lake.scan_days(tables.NOCODB_RAW_PAGES, days)
        .filter(pl.col("record_id").is_not_null())
        .select("table", "day", "record_id")
        .collect()
    )
    for (kind, day), group in frame.group_by("table", "day"):
        if kind in ids:
            ids[kind][day] = set(group["record_id"].to_list())
    return ids


@sensor(
    name="nocodb_reconciliation_sensor",
    job_name=INGESTION_JOB,
    minimum_interval_seconds=6 * 3600,
    default_status=DefaultSensorStatus.STOPPED,
    description="Compares the record ids of every materialized day in NocoDB with the lake (one "
    "lean read of each table, ids and times only) and rebuilds the days that differ: deletes, "
    "and anything the change sensor missed.",
)
def nocodb_reconciliation_sensor(
    context: SensorEvaluationContext,
    record_source: RecordSourceResource,
    sync_settings: SyncSettings,
    privacy: PrivacyResource,
    lake: LakeResource,
) -> SensorResult | SkipReason:
    settings = sync_settings
    stored = lake.lake()
    first_day, last_day = _partition_days()
    if last_day is None:
        return SkipReason("No daily partition yet.")
    days = [
        day
        for day in stored.days_present(tables.NOCODB_RAW_PAGES)
        if first_day <= day <= last_day
        and (
            not settings.reconcile_days or day > last_day - timedelta(days=settings.reconcile_days)
        )
    ]
    if not days:
        return SkipReason("No materialized day to reconcile.")
    run_requests, observations = [], []
    started = time.perf_counter()
    erased = tombstones(stored)
    # The key is read only where records were erased.
    erased_digest = privacy.digester() if erased else None
    in_lake = _lake_ids(stored, days)
    with record_source.open() as source:
        if not source.supports_changes:
            return SkipReason(f"{source.describe()} cannot be reconciled; use full daily pulls.")
        requests_before = source.stats().get("requests", 0)
        in_source = {
            kind: source.ids_by_day(kind, days, record_source.fetch_workers) for kind in SYNC_TABLES
        }
        requests = source.stats().get("requests", 0) - requests_before
    for day in days:
        deleted: dict[str, list[str]] = {}
        added: dict[str, int] = {}
        missing_ids: dict[str, list[str]] = {}
        for kind in SYNC_TABLES:
            lake_ids, source_ids = in_lake[kind][day], in_source[kind][day]
            # Records erased on request are meant to be missing from the lake.
            missing = {
                record_id
                for record_id in source_ids - lake_ids
                if erased_digest is None
                or not is_tombstoned(erased, erased_digest, kind, record_id)
            }
            if missing or lake_ids - source_ids:
                deleted[kind] = sorted(lake_ids - source_ids)
                added[kind] = len(missing)
                missing_ids[kind] = sorted(missing)
        if not deleted:
            continue
        found = {
            **{f"deleted_{k}": len(v) for k, v in deleted.items()},
            **{f"missing_{k}": n for k, n in added.items()},
        }
        _log(context, "reconcile_mismatch", day=day, **found)
        observations.append(
            AssetObservation(
                asset_key=tables.NOCODB_RAW_PAGES,
                partition=day.isoformat(),
                metadata={
                    **found,
                    "deleted_ids": {k: v[:_IDS_SHOWN] for k, v in deleted.items()},
                    "action": settings.deletions,
                },
            )
        )
        if settings.deletions == "remove" or any(added.values()):
            # The ids themselves, not how many: another record missing on the same day later
            # is another run (Dagster never runs a run key twice). The day of the tick too,
            # so a rebuild that failed is tried again the next day.
            mismatch = [deleted, missing_ids, datetime.now(UTC).date().isoformat()]
            digest = hashlib.sha256(json.dumps(mismatch, sort_keys=True).encode()).hexdigest()[:12]
            run_requests.append(
                RunRequest(
                    run_key=f"nocodb-reconcile:{day.isoformat()}:{digest}",
                    partition_key=day.isoformat(),
                    tags={TRIGGER_TAG: "nocodb_reconciliation_sensor"},
                )
            )
    _log(context, "reconcile_done", days=len(days), mismatched=len(observations),
         requests=requests, seconds=round(time.perf_counter() - started, 3))  # fmt: skip
    return SensorResult(
        run_requests=run_requests,
        asset_events=observations,
        skip_reason=None if run_requests else f"{len(days)} day(s) agree with the source",
    )
