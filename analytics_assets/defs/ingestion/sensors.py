"""Incremental sync: a sensor that materializes the days NocoDB changed, and a periodic
reconciliation that catches what a change feed cannot see (deletes, records older than the
overlap window, edits whose run failed after the cursor moved on). Both request
`ingestion_job` runs for whole days: a day is always rebuilt from the source, so a re-run
converges to the same result and a deleted record disappears.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
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
from analytics_assets.defs.builds import days_being_built
from analytics_assets.defs.ingestion.jobs import INGESTION_JOB
from analytics_assets.defs.ingestion.resources import RecordSourceResource, SyncSettings
from analytics_assets.defs.partitions import (
    TRIGGER_TAG,
    consecutive_runs,
    daily_partitions,
    range_tags,
)
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.privacy.erasure import is_tombstoned, tombstones
from analytics_assets.sources.reconcile import DayDifference, compare_day, lake_versions
from analytics_assets.sources.sync_cursor import SyncCursor, window_fingerprints
from analytics_assets.storage.lake import Lake

SYNC_TABLES = ("conversations", "messages")
# How far from its new day the change sensor looks for an edited record's old day.
MOVE_WINDOW_DAYS = 31
MOVE_WINDOW = timedelta(days=MOVE_WINDOW_DAYS)
# A table found empty on the first tick: everything that appears later is a change.
BEGINNING = datetime(1970, 1, 1, tzinfo=UTC)
_IDS_SHOWN = 50


# Days the reconciliation builds per tick where the lake lacks them (newest first).
MAX_MISSING_DAYS = 31
# The longest range run the change sensor asks for: a month of changed days at once.
MAX_DAYS_PER_RUN = 31


def _log(context: SensorEvaluationContext, event: str, **fields: object) -> None:
    # One JSON line per event: counts and timings only, never the URL or token.
    context.log.info(json.dumps({"event": event, **fields}, default=str, sort_keys=True))


def oldest_day_kept(retention_days: dict[str, int], today: date) -> date | None:
    """The first day every table's retention still keeps (`apply_retention` removes the
    days before today - its days); None without retention."""
    if not retention_days:
        return None
    return today - timedelta(days=min(retention_days.values()))


def _partition_days() -> tuple[date, date | None]:
    first = date.fromisoformat(daily_partitions.get_first_partition_key())
    last_key = daily_partitions.get_last_partition_key()
    return first, date.fromisoformat(last_key) if last_key else None


def _days_left_behind(
    lake: Lake, edited: dict[str, dict[str, date]]
) -> dict[date, dict[str, list[str]]]:
    """Per day, the edited records the lake holds on it that the source now files on another
    day. One scan of three narrow columns, only on a tick that saw an edit, over the days
    within `MOVE_WINDOW_DAYS` of the edited records' days (a correction of a time zone or a
    clock moves a record by hours, not months): an edit on every tick (a thumbs-up is one)
    must not read the whole history each time. A record moved further is the
    reconciliation's (`moved`)."""
    wanted = [record_id for records in edited.values() for record_id in records]
    filed = [day for records in edited.values() for day in records.values()]
    if not wanted:
        return {}
    low, high = min(filed) - MOVE_WINDOW, max(filed) + MOVE_WINDOW
    days = [d for d in lake.days_present(tables.NOCODB_RAW_PAGES) if low <= d <= high]
    if not days:
        return {}
    frame = (
        lake.scan_days(tables.NOCODB_RAW_PAGES, days)
        .filter(pl.col("record_id").is_in(wanted))
        .select("table", "day", "record_id")
        .collect()
    )
    left: dict[date, dict[str, list[str]]] = {}
    for kind, day, record_id in frame.iter_rows():
        filed_now = edited.get(kind, {}).get(record_id)
        if filed_now is not None and filed_now != day:
            left.setdefault(day, {}).setdefault(kind, []).append(record_id)
    return left


def _add_days_left_behind(
    lake: Lake,
    edited: dict[str, dict[str, date]],
    touched: dict[date, Counter],
    returned: dict[date, dict[str, str]],
) -> None:
    """Counts the days edited records left as changed, and names what left them in the
    run key's part of `returned`."""
    for day, kinds in _days_left_behind(lake, edited).items():
        for kind, record_ids in kinds.items():
            touched.setdefault(day, Counter())[kind] += len(record_ids)
            returned.setdefault(day, {})[f"{kind}:moved_away"] = ",".join(sorted(record_ids))


def _not_being_built(
    context: SensorEvaluationContext, days: list[date]
) -> tuple[list[date], list[date]]:
    """`days` split into those no unfinished run may write, and those that wait for one (in
    the cursor, asked for again on a later tick). A range run has no `dagster/partition`
    tag, so the queue's per-partition limit did not hold it apart from a rebuild of one of
    its days (the across-midnight and report rebuilds take no lease: they skip the pull),
    and both wrote the day at once. The across-midnight sensor waits for this sensor's runs
    the same way."""
    busy = days_being_built(context.instance) if days else set()
    waiting = [day for day in days if day in busy]
    if waiting:
        _log(context, "sync_waiting_for_runs", days=[day.isoformat() for day in waiting])
    return [day for day in days if day not in busy], waiting


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
    lake: LakeResource,
    privacy: PrivacyResource,
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
    # Per table, the records edited since the last tick, with the day each is filed on now.
    edited: dict[str, dict[str, date]] = {}
    with record_source.open() as source:
        if not source.supports_changes:
            return SkipReason(f"{source.describe()} has no change feed; use the daily schedule.")
        for kind in SYNC_TABLES:
            table = cursor.table(kind)
            if table.watermark is None:
                for day in _bootstrap(
                    context, source, kind, table, settings.bootstrap, overlap, now
                ):
                    touched.setdefault(day, Counter())[kind] += 1
                if settings.bootstrap == "latest":
                    continue
            scan = source.changes_since(kind, table.since(overlap))
            for day, fingerprint in window_fingerprints(scan.changes).items():
                returned.setdefault(date.fromisoformat(day), {})[kind] = fingerprint
            # Every edit the scan returned, those the overlap finds late included: a record
            # no longer on a day the lake holds it on is found whenever its edit is seen.
            edited[kind] = {
                change.record_id: change.day for change in scan.changes if change.edited
            }
            changed_days = table.advance(scan.changes, overlap, now)
            for day, count in changed_days.items():
                touched.setdefault(day, Counter())[kind] += count
            _log(context, "sync_changes", table=kind, returned=len(scan.changes),
                 fresh=sum(changed_days.values()), days=len(changed_days),
                 requests=scan.requests, seconds=round(scan.seconds, 3),
                 watermark=table.watermark)  # fmt: skip

    # A record whose event time was edited onto another day is new on that day, and its old
    # day still holds it: that day is rebuilt too, or the record counts on both.
    _add_days_left_behind(lake.lake(), edited, touched, returned)

    first_day, last_day = _partition_days()
    # A day past a table's retention is not built again: an edit of an old record (a late
    # thumbs-up) brought back raw records retention had removed, until its next run.
    kept_from = oldest_day_kept(privacy.retention_days, now.date())
    earliest = max(first_day, kept_from) if kept_from else first_day
    candidates = set(touched) | cursor.pending_days
    ready = sorted(d for d in candidates if last_day and earliest <= d <= last_day)
    cursor.pending_days = {d for d in candidates if last_day is None or d > last_day}
    ready, waiting_for_runs = _not_being_built(context, ready)
    cursor.pending_days |= set(waiting_for_runs)
    before_start = sorted(d for d in candidates if d < earliest)
    if before_start:
        context.log.warning(
            f"{len(before_start)} changed day(s) before {earliest} (the first partition, or "
            f"the shortest retention) are ignored: {[d.isoformat() for d in before_start[:10]]}"
        )

    def run_key(first: date, last: date) -> str:
        # Not the new cursor: it holds the sensor's clock, so the same tick evaluated twice
        # named its runs differently and every day ran again.
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        what = json.dumps(
            [context.cursor, *((day.isoformat(), returned.get(day, {})) for day in days)],
            sort_keys=True,
        )
        span = first.isoformat() if first == last else f"{first.isoformat()}..{last.isoformat()}"
        return f"nocodb-changes:{span}:{hashlib.sha256(what.encode()).hexdigest()[:12]}"

    # Consecutive changed days in one range run, which builds each day with the next: seven
    # days changed at once (an import, an outage caught up) took seven runs and 22.8 s of
    # them, against 9.8 s for one range run (`benchmarks/bench_catch_up.py`).
    run_requests = [
        RunRequest(
            run_key=run_key(first, last),
            partition_key=first.isoformat() if first == last else None,
            tags={
                TRIGGER_TAG: "nocodb_changes_sensor",
                **(range_tags(first, last) if first != last else {}),
            },
        )
        for first, last in consecutive_runs(ready, MAX_DAYS_PER_RUN)
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
    pending = sorted(d.isoformat() for d in cursor.pending_days if d not in waiting_for_runs)
    waiting = [d.isoformat() for d in waiting_for_runs]
    return SensorResult(
        run_requests=run_requests,
        asset_events=observations,
        cursor=cursor.to_json(),
        skip_reason=None
        if run_requests
        else f"No changed day to materialize (waiting for their partitions: {pending}; for "
        f"the runs writing them: {waiting})",
    )


def _bootstrap(
    context, source, kind: str, table, bootstrap: str, overlap: timedelta, now: datetime
) -> list[date]:
    """A table's first tick: the cursor starts at the newest record (`latest`) or at the
    beginning (`all`). Returns the days of the records written while it started, which are
    newer than the newest it found and new (they were dropped with the rest of the overlap)."""
    started = time.perf_counter()
    latest = source.latest_version(kind) if bootstrap == "latest" else None
    table.start_at(latest or BEGINNING, overlap, now)
    written_meanwhile = []
    if latest is not None:
        # Remember what the overlap will return again, as already loaded.
        scan = source.changes_since(kind, table.since(overlap))
        table.advance(scan.changes, overlap, now)
        written_meanwhile = [change.day for change in scan.changes if change.version > latest]
    _log(context, "sync_bootstrap", table=kind, watermark=table.watermark,
         seconds=round(time.perf_counter() - started, 3))  # fmt: skip
    return written_meanwhile


def _reconciled_days(
    settings: SyncSettings, retention_days: dict[str, int], first_day: date, last_day: date
) -> Callable[[date], bool]:
    """Which days the reconciliation compares: the partitions', within the last
    `ANALYTICS_RECONCILE_DAYS` where set. A day past the shortest retention is not built
    again, as in the change sensor: a late edit there wrote the day's messages back into the
    lake and MongoDB until retention ran."""
    buildable = _buildable_days(retention_days, first_day, last_day)
    recent_from = (
        last_day - timedelta(days=settings.reconcile_days - 1) if settings.reconcile_days else None
    )
    return lambda day: buildable(day) and (recent_from is None or day >= recent_from)


def _buildable_days(
    retention_days: dict[str, int], first_day: date, last_day: date
) -> Callable[[date], bool]:
    """Days a run may build: a partition, not past the shortest retention."""
    kept_from = oldest_day_kept(retention_days, datetime.now(UTC).date())
    earliest = max(first_day, kept_from) if kept_from else first_day
    return lambda day: earliest <= day <= last_day


def _days_moved_to(
    in_source: dict, differences_by_day: dict[date, dict[str, DayDifference]]
) -> dict[date, dict[str, int]]:
    """The days records the lake holds elsewhere moved to, with how many per table."""
    moved_to: dict[date, Counter] = {}
    for differences in differences_by_day.values():
        for kind, difference in differences.items():
            for record_id in difference.moved:
                day = in_source[kind].day_of.get(record_id)
                if day is not None:
                    moved_to.setdefault(day, Counter())[f"moved_here_{kind}"] += 1
    return {day: dict(counts) for day, counts in moved_to.items()}


def _differences_of_day(
    day: date, in_source: dict, in_lake: dict, erased, erased_digest
) -> dict[str, DayDifference]:
    """Per table, what differs on `day` between the source and the lake (tables that agree
    left out)."""
    differences: dict[str, DayDifference] = {}
    for kind in SYNC_TABLES:
        source_versions = in_source[kind].by_day[day]
        if erased_digest is not None:
            # Records erased on request are meant to be missing from the lake.
            source_versions = {
                record_id: version
                for record_id, version in source_versions.items()
                if not is_tombstoned(erased, erased_digest, kind, record_id)
            }
        difference = compare_day(
            in_lake[kind].get(day, {}), source_versions, in_source[kind].all_ids
        )
        if difference:
            differences[kind] = difference
    return differences


def _build_missing_day(day: date, counts: dict[str, int]) -> tuple[AssetObservation, RunRequest]:
    """The observation and the run for a day the lake lacks. The tick's day is in the run
    key, as for the other rebuilds: a build that failed is tried again the next day."""
    what = json.dumps([counts, datetime.now(UTC).date().isoformat()], sort_keys=True)
    return (
        AssetObservation(
            asset_key=tables.NOCODB_RAW_PAGES,
            partition=day.isoformat(),
            metadata={**counts, "action": "build"},
        ),
        RunRequest(
            run_key=f"nocodb-reconcile-missing:{day.isoformat()}:"
            f"{hashlib.sha256(what.encode()).hexdigest()[:12]}",
            partition_key=day.isoformat(),
            tags={TRIGGER_TAG: "nocodb_reconciliation_sensor"},
        ),
    )


def _days_the_lake_lacks(
    in_source: dict, held: set[date], reconciled: Callable[[date], bool], in_flight: set[date]
) -> dict[date, dict[str, int]]:
    """Days the source has records on and the lake lacks, with their records per table, from
    the lake's first day on (what came before it is history not loaded yet, not a loss): a
    day whose run failed through all its retries (the change sensor forgets a day once it
    has requested it), or a day a record was moved to. The newest `MAX_MISSING_DAYS` of
    them, so that a long gap is built over several ticks, not in one burst of runs."""
    on_source = Counter()
    for versions in in_source.values():
        on_source.update(versions.records_per_day)
    lacking = [
        day
        for day in on_source
        if day not in held and day not in in_flight and day >= min(held) and reconciled(day)
    ]
    return {
        day: {f"missing_day_{kind}": in_source[kind].records_per_day.get(day, 0)
              for kind in SYNC_TABLES}
        for day in sorted(lacking)[-MAX_MISSING_DAYS:]
    }  # fmt: skip


def _lake_versions(
    lake: Lake, days: list[date], version_fields: dict[str, tuple[str, str]]
) -> dict[str, dict[date, dict[str, str | None]]]:
    """Per table, per day, record id -> version of the raw records in the lake."""
    if not days or not lake.present_among(tables.NOCODB_RAW_PAGES, days):
        return {kind: {} for kind in version_fields}
    return lake_versions(lake.scan_days(tables.NOCODB_RAW_PAGES, days), version_fields)


@sensor(
    name="nocodb_reconciliation_sensor",
    job_name=INGESTION_JOB,
    minimum_interval_seconds=6 * 3600,
    default_status=DefaultSensorStatus.STOPPED,
    description="Compares the records of every materialized day in NocoDB with the lake, by id "
    "and version (one lean read of each table, ids and times only), and rebuilds the days that "
    "differ: deletes, edits that never reached the lake, records whose day was edited, and "
    "anything the change sensor missed.",
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
    reconciled = _reconciled_days(settings, privacy.retention_days, first_day, last_day)
    held = {day for day in stored.days_present(tables.NOCODB_RAW_PAGES) if first_day <= day}
    days = sorted(day for day in held if reconciled(day))
    if not held:  # days may be none: the window's runs may all have failed (built below)
        return SkipReason("No materialized day to reconcile.")
    run_requests, observations = [], []
    started = time.perf_counter()
    erased = tombstones(stored)
    # The key is read only where records were erased.
    erased_digest = privacy.digester() if erased else None
    with record_source.open() as source:
        if not source.supports_changes:
            return SkipReason(f"{source.describe()} cannot be reconciled; use full daily pulls.")
        requests_before = source.stats().get("requests", 0)
        in_source = {
            kind: source.versions_by_day(kind, days, record_source.fetch_workers)
            for kind in SYNC_TABLES
        }
        requests = source.stats().get("requests", 0) - requests_before
    in_lake = _lake_versions(
        stored, days, {kind: in_source[kind].version_fields for kind in SYNC_TABLES}
    )
    remove_deleted = settings.deletions == "remove"
    differences_by_day: dict[date, dict[str, DayDifference]] = {}
    for day in days:
        differences = _differences_of_day(day, in_source, in_lake, erased, erased_digest)
        if not differences:
            continue
        differences_by_day[day] = differences
        found = {
            name: count
            for kind, difference in differences.items()
            for name, count in difference.counts(kind).items()
        }
        _log(context, "reconcile_mismatch", day=day, **found)
        observations.append(
            AssetObservation(
                asset_key=tables.NOCODB_RAW_PAGES,
                partition=day.isoformat(),
                metadata={
                    **found,
                    "deleted_ids": {
                        kind: list(difference.deleted[:_IDS_SHOWN])
                        for kind, difference in differences.items()
                        if difference.deleted
                    },
                    "action": settings.deletions,
                },
            )
        )
        if any(d.needs_rebuild(remove_deleted=remove_deleted) for d in differences.values()):
            # The ids themselves, not how many: another record missing on the same day later
            # is another run (Dagster never runs a run key twice). The day of the tick too,
            # so a rebuild that failed is tried again the next day.
            mismatch = [
                {kind: asdict(difference) for kind, difference in sorted(differences.items())},
                datetime.now(UTC).date().isoformat(),
            ]
            digest = hashlib.sha256(json.dumps(mismatch, sort_keys=True).encode()).hexdigest()[:12]
            run_requests.append(
                RunRequest(
                    run_key=f"nocodb-reconcile:{day.isoformat()}:{digest}",
                    partition_key=day.isoformat(),
                    tags={TRIGGER_TAG: "nocodb_reconciliation_sensor"},
                )
            )
    # Days a run is queued for or running on: a day the lake lacks because its first run
    # has not finished yet is not missing.
    in_flight = days_being_built(context.instance, INGESTION_JOB)
    lacking = _days_the_lake_lacks(in_source, held, reconciled, in_flight)
    # A record moved to a day not compared here (before the lake's first day, or held but
    # outside ANALYTICS_RECONCILE_DAYS): its old day is rebuilt without it, so its new day
    # is built too, or the record was in neither.
    buildable = _buildable_days(privacy.retention_days, first_day, last_day)
    for day, counts in sorted(_days_moved_to(in_source, differences_by_day).items()):
        if day not in days and day not in lacking and day not in in_flight and buildable(day):
            lacking[day] = counts
    for day, counts in lacking.items():
        _log(context, "reconcile_missing_day", day=day, **counts)
        observation, request = _build_missing_day(day, counts)
        observations.append(observation)
        run_requests.append(request)
    _log(context, "reconcile_done", days=len(days),
         mismatched=len(observations) - len(lacking), missing_days=len(lacking), requests=requests,
         seconds=round(time.perf_counter() - started, 3))  # fmt: skip
    return SensorResult(
        run_requests=run_requests,
        asset_events=observations,
        skip_reason=None if run_requests else f"{len(days)} day(s) agree with the source",
    )
