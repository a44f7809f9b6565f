"""A live NocoDB as a record source: a short run queries each day of each table (streamed
page by page, checkpointed); a backfill of several days reads each table once by key range
and splits it by day locally."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from analytics_assets.nocodb.client import (
    NocoDBClient,
    Page,
    TableInfo,
    and_filters,
    blank_filter,
    day_filter,
)
from analytics_assets.nocodb.errors import NocoDBNotFoundError
from analytics_assets.settings import url_without_credentials
from analytics_assets.sources.base import (
    Change,
    ChangeScan,
    DayVersions,
    FetchResult,
    RecordSource,
)
from analytics_assets.sources.checkpoints import PageSpool, sweep_stale
from analytics_assets.sources.days import filing_day
from analytics_assets.sources.schema import (
    EVENT_TIME_FIELD,
    KEY_FIELD,
    REQUIRED_FIELDS,
    SYSTEM_FIELDS,
    SourceSchema,
    TableKind,
)
from analytics_assets.transforms.raw import empty_raw_frame, raw_frame_from_records

# NocoDB's column types (uidt) its date filters (`exactDate`) work on.
DATE_COLUMN_TYPES = frozenset({"DateTime", "Date", "CreatedTime", "LastModifiedTime"})


def _source_time(value: object) -> datetime | None:
    """A NocoDB DateTime / CreatedTime value ("2026-11-02 12:35:53+00:00") in UTC."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


# From this many days on, a backfill reads the whole table once by key range (what a bare
# paging loop costs) instead of one date-filtered query per day: NocoDB evaluates a date
# filter by scanning, so 60 days by day scan the table 120 times.
RANGE_MIN_DAYS = 3
# Key-range shards per worker: a shard's pages follow one another (each starts after the
# last key of the one before), so faults and retries add up along a shard; with more shards
# than workers the unlucky shard is a small one, and a worker done early takes the next.
# Measured with benchmarks/bench_faults.py (30 % of requests faulted).
SHARDS_PER_WORKER = 4
# Reader threads per request in flight (`NocoDBClient.in_flight_limit`).
READERS_PER_PLACE = 2


def record_day(
    record: dict, event_field: str, created_field: str, first_day: date | None = None
) -> date | None:
    """The UTC day a record is filed under (sources/days.py): its event time's, else the day
    NocoDB stored it, where validation rejects it with its reason. That covers a blank event
    time, one that does not read as a time (a text column can hold one), and one outside the
    partitions (1970, 2100)."""
    return filing_day(
        _source_time(record.get(event_field)), _source_time(record.get(created_field)), first_day
    )


def record_version(record: dict, updated_field: str, created_field: str) -> str | None:
    """A record's version as the reconciliation compares it (ISO, UTC): when NocoDB last
    edited it, else when it stored it. Parsed, so a change in how the server writes a time
    does not read as an edit of every record."""
    version = _source_time(record.get(updated_field)) or _source_time(record.get(created_field))
    return version.isoformat() if version else None


def _filter_time(moment: datetime) -> str:
    # NocoDB compares DateTime filters to the second, in UTC, and keeps milliseconds: `ge` at
    # a second also returns rows later within that second.
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class _KeyScan:
    """A table read whole by its integer key: what each page of it becomes (`results_of`)."""

    table_id: str
    key: str
    fields: list[str]
    results_of: Callable[[Page], list]


def _key_shards(bounds: tuple[int, int], count: int) -> list[tuple[int, int]]:
    """`count` half-open key ranges (after, up_to] covering [low, high]."""
    low, high = bounds
    span = high - low + 1
    count = max(1, min(count, span))
    edges = [low - 1 + span * i // count for i in range(count + 1)]
    return [(edges[i], edges[i + 1]) for i in range(count) if edges[i + 1] > edges[i]]


# The key range of a scan over a whole table (NocoDB's Id is an auto-increment integer; the
# upper bound stays within what a JavaScript number holds exactly).
_BEFORE_ANY_KEY = -1
_AFTER_ANY_KEY = 2**53 - 1


class NocoDBSource(RecordSource):
    supports_changes = True

    def __init__(
        self,
        client: NocoDBClient,
        schema: SourceSchema | None = None,
        *,
        base_id: str | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_max_age_s: float = 3600.0,
        checkpoint_storage_options: dict | None = None,
        first_day: date | None = None,
        checkpoint_scope: str = "",
    ):
        self.client = client
        self.schema = schema or SourceSchema()
        self.base_id = base_id
        # The first daily partition: an event time before it files a record under the day
        # NocoDB stored it (sources/days.py).
        self.first_day = first_day
        # Where completed pages wait until their day's pull finishes (None: no resuming).
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_max_age_s = checkpoint_max_age_s
        self.checkpoint_storage_options = checkpoint_storage_options
        # Whose pages a pull resumes: a run's retries and re-executions share them, and a new
        # run (a change sensor's, after an edit) does not resume a failed run's older pages.
        self.checkpoint_scope = checkpoint_scope
        self._swept = False
        # Per table, the optional fields its NocoDB table has no column for (read as null).
        self.fields_not_in_source: dict[str, list[str]] = {}

    def describe(self) -> str:
        # Written into every raw record's `source` and into metadata: never a credential that
        # NOCODB_URL itself may carry.
        return f"nocodb:{url_without_credentials(str(self.client.base_url))}"

    def stats(self) -> dict[str, float]:
        return self.client.stats.as_dict()

    def _fields(self, kind: TableKind, columns: dict[str, str]) -> list[str]:
        """The mapped fields to request. A missing required field is a configuration error;
        a missing optional one is read as null and named in `fields_not_in_source`."""
        field_map = self.schema.field_map(kind)
        absent = {
            canonical: name for canonical, name in field_map.items()
            if name not in columns and name not in SYSTEM_FIELDS
        }  # fmt: skip
        required = sorted(name for canonical, name in absent.items()
                          if canonical in REQUIRED_FIELDS[kind])  # fmt: skip
        if required:
            raise NocoDBNotFoundError(
                f"NocoDB table {self.schema.table(kind)!r} has no field(s) {required}; "
                f"it has {list(columns)}. Map them in the source schema settings."
            )
        if absent:
            self.fields_not_in_source[kind] = sorted(set(absent.values()))
        return [name for name in dict.fromkeys(field_map.values()) if name in columns]

    def read_table(self, name: str, fields: list[str] | None = None) -> pl.DataFrame:
        """The table's rows, with those of `fields` it has (as the export source does)."""
        info = self.client.table_info(name, base_id=self.base_id)
        if fields:
            fields = [field for field in fields if field in info.columns]
        query = {"fields": fields} if fields else {}
        rows = list(self.client.iter_records(info.id, **query))
        return pl.DataFrame(rows, infer_schema_length=None)

    def fetch_day(self, kind: TableKind, day: date) -> FetchResult:
        info = self.client.table_info(self.schema.table(kind), base_id=self.base_id)
        fields = self._fields(kind, info.columns)
        primary_key = info.primary_key
        if primary_key:
            fields.append(primary_key)
        # Offset paging is only stable over a unique sort key: the row id, else the record key.
        sort_key = primary_key or self.schema.source_field(kind, KEY_FIELD[kind])
        queries = self._day_queries(kind, info.columns, day)
        files_here = self._filed_on(kind, day)
        frames = [empty_raw_frame()]
        pages = resumed = 0
        requests_before = self.client.stats.requests
        started = time.perf_counter()
        spools = []
        for where in queries:
            spool = self._spool(info.id, kind, day, where, fields) if primary_key else None
            last_id = None
            if spool:
                spools.append(spool)
                done, last_id = spool.load()
                frames += done
                pages += len(done)
                resumed += len(done)
                spooled = len(done)
            if primary_key:
                # By key (`Id > last`), not by offset: a record deleted or edited off the
                # day between two pages moved every later one back by one, so the next
                # page skipped a record. A resumed pull starts after its last saved page.
                day_pages = self.client.iter_keyset(
                    info.id, primary_key, fields=fields, where=where,
                    after=_BEFORE_ANY_KEY if last_id is None else int(last_id),
                    up_to=_AFTER_ANY_KEY,
                )  # fmt: skip
            else:
                day_pages = self.client.iter_pages(
                    info.id, where=where, sort=sort_key, fields=fields
                )
            for page in day_pages:
                # The date filters select candidates; the filing rule decides (an event on
                # this day logged long before NocoDB stored it belongs to the stored day).
                records = [record for record in page.records if files_here(record)]
                frame = empty_raw_frame()
                if records:
                    frame = raw_frame_from_records(
                        records,
                        table=kind,
                        day=day,
                        page=pages,
                        fetched_at=datetime.now(UTC),
                        source=f"{self.describe()}/{info.id}",
                        id_field=primary_key,
                    )
                    frames.append(frame)
                if page.records and spool:
                    spool.save(spooled, frame, str(page.records[-1][primary_key]))
                    spooled += 1
                pages += 1
        for spool in spools:
            spool.clear()
        if spools and not self._swept:
            # Once per source: the spools of runs that failed and never came back.
            sweep_stale(
                self.checkpoint_dir, self.checkpoint_max_age_s, self.checkpoint_storage_options
            )
            self._swept = True
        frame = pl.concat(frames)
        return FetchResult(
            frame=frame,
            pages=pages,
            stats={
                "records": frame.height,
                "requests": self.client.stats.requests - requests_before,
                "seconds": round(time.perf_counter() - started, 3),
                "resumed_pages": resumed,
            },
        )

    def fetch_ranges(
        self, kinds: list[TableKind], days: list[date], workers: int = 4
    ) -> dict[TableKind, dict[date, FetchResult]]:
        """Each table of `kinds` read whole, once, in key-range shards paged by key (`Id >
        last`), every record assigned its day locally; records outside `days` are dropped.
        The tables are read at the same time, `workers` requests in flight in all: the one
        table's setup requests and last shards overlap the other's, where one after the
        other they added up (under faults, the small conversations table's serial setup
        alone took seconds). Left out (fetched day by day): every table for a short range,
        and a table without an ID column. Not checkpointed page by page: a failed range
        restarts from its start."""
        if len(days) < RANGE_MIN_DAYS or not kinds:
            return {}
        wanted = set(days)
        # Pages numbered across the shards and tables, so a day's `pages` counts the pages it
        # came from (each shard's own index starts at 0 again).
        page_numbers = itertools.count()

        def scan_of(kind: TableKind) -> _KeyScan | None:
            info = self._table_info(kind)
            if not info.primary_key:
                return None
            event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
            created_field = self.schema.source_field(kind, "CreatedAt")
            source = f"{self.describe()}/{info.id}"

            def frames_of(page: Page) -> list[pl.DataFrame]:
                by_day: dict[date, list[dict]] = {}
                for record in page.records:
                    day = record_day(record, event_field, created_field, self.first_day)
                    if day in wanted:
                        by_day.setdefault(day, []).append(record)
                fetched_at, number = datetime.now(UTC), next(page_numbers)
                return [
                    raw_frame_from_records(
                        records,
                        table=kind,
                        day=day,
                        page=number,
                        fetched_at=fetched_at,
                        source=source,
                        id_field=info.primary_key,
                    )
                    for day, records in by_day.items()
                ]

            fields = [*self._fields(kind, info.columns), info.primary_key]
            return _KeyScan(info.id, info.primary_key, fields, frames_of)

        requests_before = self.client.stats.requests
        started = time.perf_counter()
        frames_per_kind = self._scan_by_key(
            [functools.partial(scan_of, kind) for kind in kinds], workers
        )
        seconds = round(time.perf_counter() - started, 3)
        requests = self.client.stats.requests - requests_before
        results: dict[TableKind, dict[date, FetchResult]] = {}
        for kind, frames in zip(kinds, frames_per_kind, strict=True):
            if frames is None:
                continue  # no ID column: day by day
            # One sort and one split, not a filter over every record per day.
            by_day = (
                pl.concat([empty_raw_frame(), *frames])
                .sort(pl.col("record_id").cast(pl.Int64, strict=False))
                .partition_by("day", as_dict=True)
            )
            results[kind] = {}
            for day in days:
                frame = by_day.get((day,), empty_raw_frame())
                results[kind][day] = FetchResult(
                    frame=frame,
                    pages=frame["page"].n_unique(),
                    # The requests and seconds of the whole range read, every table's.
                    stats={
                        "records": frame.height,
                        "requests": requests,
                        "seconds": seconds,
                        "resumed_pages": 0,
                        "range": True,
                    },
                )
        return results

    def _table_info(self, kind: TableKind) -> TableInfo:
        return self.client.table_info(self.schema.table(kind), base_id=self.base_id)

    def _scan_by_key(
        self, scans: list[Callable[[], _KeyScan | None]], workers: int
    ) -> list[list | None]:
        """For each of `scans` (a table's setup, which gives what to read, or None to leave
        it out), `results_of` each page of its whole table. The tables are read at once,
        each in key-range shards paged by key (`Id > last`), `workers` requests in flight
        in all; a table's setup and key bounds run in a thread of their own, and its shards
        start as soon as they are known, whatever the other tables are waiting for (under
        faults, one table's metadata request took 5.7 s and held the other back)."""
        shards_per_table = workers * SHARDS_PER_WORKER

        def read(scan: _KeyScan, shard: tuple[int, int]) -> list:
            results = []
            for page in self.client.iter_keyset(
                scan.table_id, scan.key, after=shard[0], up_to=shard[1], fields=scan.fields
            ):
                results += scan.results_of(page)
            return results

        # Twice as many readers as requests in flight: a shard whose page waits to be retried
        # holds no place, so another shard's page goes meanwhile (the server still sees at
        # most `workers` at once).
        readers = max(1, READERS_PER_PLACE * workers)
        with (
            self.client.in_flight_limit(workers),
            ThreadPoolExecutor(readers, thread_name_prefix="nocodb-shard") as pool,
            ThreadPoolExecutor(max(1, len(scans)), thread_name_prefix="nocodb-bounds") as setup,
        ):

            def shards_of(setup_of: Callable[[], _KeyScan | None]) -> list[Future] | None:
                scan = setup_of()
                if scan is None:
                    return None
                bounds = self.client.key_bounds(scan.table_id, scan.key)
                shards = _key_shards(bounds, shards_per_table) if bounds else []
                return [pool.submit(read, scan, shard) for shard in shards]

            try:
                reads = list(setup.map(shards_of, scans))
                # The first failure ends the read: the shards still queued are not read
                # (each would spend its retries against a source that is down) before the
                # step's own retry starts.
                wait([f for futures in reads for f in futures or []],
                     return_when=FIRST_EXCEPTION)  # fmt: skip
                return [None if futures is None
                        else [result for future in futures for result in future.result()]
                        for futures in reads]  # fmt: skip
            except BaseException:
                setup.shutdown(wait=False, cancel_futures=True)
                pool.shutdown(wait=False, cancel_futures=True)
                raise

    def _spool(
        self, table_id: str, kind: TableKind, day: date, where: str, fields: list[str]
    ) -> PageSpool | None:
        if self.checkpoint_dir is None:
            return None
        key = (
            f"{self.client.base_url}|{table_id}|{kind}|{day}|{where}|{','.join(fields)}"
            f"|{self.checkpoint_scope}"
        )
        return PageSpool(
            self.checkpoint_dir, key, self.checkpoint_max_age_s, self.checkpoint_storage_options
        )

    # -- incremental sync --------------------------------------------------------------------

    def _day_queries(self, kind: TableKind, columns: dict[str, str], day: date) -> list[str | None]:
        """The date-filtered queries whose union holds every record filed on `day`: its
        event time on the day; a blank event time stored that day; and, stored that day, an
        event time outside the partitions (before the first one, or after the day itself).

        An event time in a column of another type (a CSV import, or a column changed to
        text, keeps the values as text) is read whole (None: no filter), and filed here:
        NocoDB's date filters match nothing on it, and every rebuild of a day emptied it
        without an error while a range pull, which files locally, still found the records."""
        event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
        created_field = self.schema.source_field(kind, "CreatedAt")
        if columns.get(event_field) not in DATE_COLUMN_TYPES:
            return [None]
        queries: list[str | None] = [day_filter(event_field, day)]
        if columns.get(created_field) in DATE_COLUMN_TYPES:
            stored_that_day = day_filter(created_field, day)
            later = f"({event_field},ge,exactDate,{(day + timedelta(days=1)).isoformat()})"
            outside = (
                f"({later}~or({event_field},lt,exactDate,{self.first_day.isoformat()}))"
                if self.first_day
                else later
            )
            queries += [
                and_filters(blank_filter(event_field), stored_that_day),
                # NocoDB parses a group only after the first clause, not before it.
                and_filters(stored_that_day, outside),
            ]
        return queries

    def _filed_on(self, kind: TableKind, day: date):
        """A predicate: is this record (as NocoDB returns it) filed under `day`?"""
        event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
        created_field = self.schema.source_field(kind, "CreatedAt")
        return lambda record: record_day(record, event_field, created_field, self.first_day) == day

    def _require_id(self, kind: TableKind, primary_key: str | None) -> str:
        if not primary_key:
            raise NocoDBNotFoundError(
                f"NocoDB table {self.schema.table(kind)!r} has no ID column: records cannot be "
                "tracked across syncs. Recreate it with an ID column, or run full daily pulls."
            )
        return primary_key

    def changes_since(self, kind: TableKind, since: datetime) -> ChangeScan:
        """One query over `UpdatedAt >= since or CreatedAt >= since`, ids and times only:
        the cost grows with what changed, not with the table."""
        info = self.client.table_info(self.schema.table(kind), base_id=self.base_id)
        primary_key = self._require_id(kind, info.primary_key)
        event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
        created_field = self.schema.source_field(kind, "CreatedAt")
        updated_field = self.schema.source_field(kind, "UpdatedAt")
        moment = _filter_time(since)
        where = f"({updated_field},ge,exactDate,{moment})~or({created_field},ge,exactDate,{moment})"
        fields = [primary_key, created_field, updated_field, event_field]
        requests_before = self.client.stats.requests
        started = time.perf_counter()
        changes = []
        # Paged by key (`Id > last`), not by offset: a matching record deleted between two
        # pages shifted every later one back by one, so the next page skipped one, and an
        # edit skipped so was lost once the watermark passed it. No upper bound from the
        # table's current largest key: a record added while the scan runs is read too.
        pages = self.client.iter_keyset(
            info.id, primary_key, after=_BEFORE_ANY_KEY, up_to=_AFTER_ANY_KEY, where=where,
            fields=fields,
        )  # fmt: skip
        for page in pages:
            for record in page.records:
                created = _source_time(record.get(created_field))
                updated = _source_time(record.get(updated_field))
                version = updated or created
                day = record_day(record, event_field, created_field, self.first_day)
                if version is None or day is None:
                    continue  # not written yet as far as NocoDB says; the next tick sees it
                changes.append(Change(str(record[primary_key]), version, day, updated is not None))
        return ChangeScan(
            changes=changes,
            requests=self.client.stats.requests - requests_before,
            seconds=time.perf_counter() - started,
        )

    def latest_version(self, kind: TableKind) -> datetime | None:
        info = self.client.table_info(self.schema.table(kind), base_id=self.base_id)
        newest = []
        for field_name in (
            self.schema.source_field(kind, "UpdatedAt"),
            self.schema.source_field(kind, "CreatedAt"),
        ):
            page = next(
                self.client.iter_pages(
                    info.id,
                    where=f"({field_name},notblank)",
                    sort=f"-{field_name}",
                    fields=[field_name],
                    page_size=1,
                )
            )
            if page.records:
                newest.append(_source_time(page.records[0].get(field_name)))
        present = [moment for moment in newest if moment is not None]
        return max(present) if present else None

    def versions_by_day(self, kind: TableKind, days: list[date], workers: int = 4) -> DayVersions:
        """The records filed on each of `days`, with their versions: the whole table read once
        by key range, four narrow fields per record (id, event time, stored and edited time),
        filed locally. NocoDB cannot count per day of a DateTime in one grouped request, and a
        date-filtered count per day scans the table each time: this costs what one lean read
        of the table does."""
        info = self.client.table_info(self.schema.table(kind), base_id=self.base_id)
        primary_key = self._require_id(kind, info.primary_key)
        event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
        created_field = self.schema.source_field(kind, "CreatedAt")
        updated_field = self.schema.source_field(kind, "UpdatedAt")
        fields = [
            primary_key,
            *(f for f in dict.fromkeys((event_field, created_field, updated_field))
              if f in info.columns),
        ]  # fmt: skip
        wanted = set(days)

        def filed(page: Page) -> list[tuple[date | None, str, str | None]]:
            return [
                (
                    record_day(record, event_field, created_field, self.first_day),
                    str(record[primary_key]),
                    record_version(record, updated_field, created_field),
                )
                for record in page.records
            ]

        versions = DayVersions(
            by_day={day: {} for day in days},
            all_ids=set(),
            version_fields=(updated_field, created_field),
        )
        (filed_records,) = self._scan_by_key(
            [lambda: _KeyScan(info.id, primary_key, fields, filed)], workers
        )
        for day, record_id, version in filed_records:
            versions.all_ids.add(record_id)
            if day is not None:
                versions.records_per_day[day] += 1
                versions.day_of[record_id] = day
            if day in wanted:
                versions.by_day[day][record_id] = version
        return versions
