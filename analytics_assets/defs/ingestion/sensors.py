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
from analytics_assets.defs.partitions import daily_partitions
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.privacy.erasure import is_tombstoned, tombstones
from analytics_assets.sources.sync_cursor import SyncCursor
from analytics_assets.storage.lake import Lake

SYNC_TABLES = ("conversations", "messages")
# A table found empty on the first tick: everything that appears later is a change.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
TRIGGER_TAG = "analytics/trigger"
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
    touched: dict[date, Counter] = {}
    with record_source.open() as source:
        if not source.supports_changes:
            return SkipReason(f"{source.describe()} has no change feed; use the daily schedule.")
        for kind in SYNC_TABLES:
            table = cursor.table(kind)
            if table.watermark is None:
                started = time.perf_counter()
                latest = source.latest_version(kind) if settings.bootstrap == "latest" else None
                table.watermark = latest or BEGINNING
                if latest is not None:
                    # Remember what the overlap will return again, as already loaded.
                    table.advance(source.changes_since(kind, table.since(overlap)).changes, overlap)
                _log(context, "sync_bootstrap", table=kind, watermark=table.watermark,
                     seconds=round(time.perf_counter() - started, 3))  # fmt: skip
                if settings.bootstrap == "latest":
                    continue
            scan = source.changes_since(kind, table.since(overlap))
            fresh = table.advance(scan.changes, overlap)
            for change in fresh:
                touched.setdefault(change.day, Counter())[kind] += 1
            _log(context, "sync_changes", table=kind, returned=len(scan.changes),
                 fresh=len(fresh), requests=scan.requests, seconds=round(scan.seconds, 3),
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
    tick = hashlib.sha256(cursor.to_json().encode()).hexdigest()[:12]
    run_requests = [
        RunRequest(
            run_key=f"nocodb-changes:{day.isoformat()}:{tick}",
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


def _lake_ids(lake: Lake, day: date) -> dict[str, set[str]]:
    frame = lake.scan_days(tables.NOCODB_RAW_PAGES, [day]).select("table", "record_id").collect()
    return {
        kind: set(frame.filter(pl.col("table") == kind)["record_id"].drop_nulls().to_list())
        for kind in SYNC_TABLES
    }


@sensor(
    name="nocodb_reconciliation_sensor",
    job_name=INGESTION_JOB,
    minimum_interval_seconds=6 * 3600,
    default_status=DefaultSensorStatus.STOPPED,
    description="Compares each recent day's record count (then ids) in NocoDB with the lake "
    "and rebuilds the days that differ: deletes, and anything the change sensor missed.",
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
    window = [last_day - timedelta(days=n) for n in range(settings.reconcile_days)]
    present = set(stored.days_present(tables.NOCODB_RAW_PAGES))
    days = sorted(d for d in window if d in present and d >= first_day)
    run_requests, observations = [], []
    started = time.perf_counter()
    erased = tombstones(stored)
    # The key is read only where records were erased.
    erased_digest = privacy.digester() if erased else None
    with record_source.open() as source:
        if not source.supports_changes:
            return SkipReason(f"{source.describe()} cannot be reconciled; use full daily pulls.")
        for day in days:
            lake_ids = _lake_ids(stored, day)
            deleted: dict[str, list[str]] = {}
            added: dict[str, int] = {}
            for kind in SYNC_TABLES:
                # Counts first (one request per query): ids only when they disagree.
                if source.count_day(kind, day) == len(lake_ids[kind]):
                    continue
                source_ids = source.ids_of_day(kind, day)
                # Records erased on request are meant to be missing from the lake.
                missing = {
                    record_id
                    for record_id in source_ids - lake_ids[kind]
                    if erased_digest is None
                    or not is_tombstoned(erased, erased_digest, kind, record_id)
                }
                if missing or lake_ids[kind] - source_ids:
                    deleted[kind] = sorted(lake_ids[kind] - source_ids)
                    added[kind] = len(missing)
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
                digest = hashlib.sha256(
                    json.dumps([deleted, added], sort_keys=True).encode()
                ).hexdigest()[:12]
                run_requests.append(
                    RunRequest(
                        run_key=f"nocodb-reconcile:{day.isoformat()}:{digest}",
                        partition_key=day.isoformat(),
                        tags={TRIGGER_TAG: "nocodb_reconciliation_sensor"},
                    )
                )
    _log(context, "reconcile_done", days=len(days), mismatched=len(observations),
         seconds=round(time.perf_counter() - started, 3))  # fmt: skip
    return SensorResult(
        run_requests=run_requests,
        asset_events=observations,
        skip_reason=None if run_requests else f"{len(days)} day(s) agree with the source",
    )
