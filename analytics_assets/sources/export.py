"""A folder of NocoDB exports (JSON as the API returns records, NDJSON, or CSV) as a source."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from analytics_assets.sources.base import FetchResult, RecordSource
from analytics_assets.sources.schema import EVENT_TIME_FIELD, SourceSchema, TableKind
from analytics_assets.transforms.raw import RAW_SCHEMA
from analytics_assets.transforms.timestamps import parse_utc_timestamp

EXPORT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")


def _read_records(path: Path) -> pl.DataFrame:
    """The file's records as (record JSON text, record id), in file order."""
    if path.suffix == ".csv":
        # NocoDB's CSV download writes every value as text and an empty cell for null.
        table = pl.read_csv(path, infer_schema=False, missing_utf8_is_empty_string=False)
        return table.select(
            pl.struct(pl.all()).struct.json_encode().alias("record"),
            (pl.col("Id") if "Id" in table.columns else pl.lit(None, pl.String)).alias("record_id"),
        )
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        payload = json.loads(text)
        rows = payload["list"] if isinstance(payload, dict) else payload
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return pl.DataFrame(
        {
            "record": [json.dumps(row, ensure_ascii=False) for row in rows],
            "record_id": [None if row.get("Id") is None else str(row["Id"]) for row in rows],
        },
        schema={"record": pl.String, "record_id": pl.String},
    )


class ExportSource(RecordSource):
    """Reads each table's export file once per process and serves it day by day."""

    def __init__(self, folder: Path, schema: SourceSchema | None = None):
        self.folder = Path(folder)
        self.schema = schema or SourceSchema()
        self._cache: dict[TableKind, tuple[tuple[int, int], pl.DataFrame]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"export:{self.folder}"

    def path_for(self, kind: TableKind) -> Path:
        stem = self.schema.table(kind)
        for suffix in EXPORT_SUFFIXES:
            candidate = self.folder / f"{stem}{suffix}"
            if candidate.exists():
                return candidate
        raise FileNotFoundError(
            f"No export for table {stem!r} in {self.folder} "
            f"(looked for {', '.join(stem + suffix for suffix in EXPORT_SUFFIXES)})."
        )

    def _indexed(self, kind: TableKind) -> pl.DataFrame:
        path = self.path_for(kind)
        stat = path.stat()
        signature = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._cache.get(kind)
            if cached and cached[0] == signature:
                return cached[1]
        records = _read_records(path)
        event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
        created_field = self.schema.source_field(kind, "CreatedAt")
        times = pl.col("record").str.json_decode(
            pl.Struct({event_field: pl.String, created_field: pl.String})
        )
        indexed = records.with_columns(
            pl.coalesce(
                parse_utc_timestamp(times.struct.field(event_field)),
                parse_utc_timestamp(times.struct.field(created_field)),
            )
            .dt.date()
            .alias("day")
        )
        with self._lock:
            self._cache[kind] = (signature, indexed)
        return indexed

    def fetch_day(self, kind: TableKind, day: date) -> FetchResult:
        rows = self._indexed(kind).filter(pl.col("day") == day)
        frame = rows.select(
            pl.lit(kind).alias("table"),
            pl.col("day"),
            pl.lit(0, pl.Int32).alias("page"),
            pl.col("record_id"),
            pl.col("record"),
            pl.lit(datetime.now(UTC)).alias("fetched_at"),
            pl.lit(self.describe()).alias("source"),
        ).cast(RAW_SCHEMA)
        return FetchResult(frame=frame, pages=1, stats={"records": frame.height})
