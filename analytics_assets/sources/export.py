"""A folder of NocoDB exports (JSON as the API returns records, NDJSON, or CSV) as a source."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from analytics_assets.sources.base import FetchResult, RecordSource
from analytics_assets.sources.days import filing_day_expr
from analytics_assets.sources.schema import EVENT_TIME_FIELD, SourceSchema, TableKind
from analytics_assets.transforms.raw import RAW_SCHEMA, lone_surrogates_as_nul
from analytics_assets.transforms.timestamps import parse_utc_timestamp

EXPORT_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")


def _read_table(path: Path) -> pl.DataFrame:
    """The file's records as a frame, in file order, one column per field."""
    if path.suffix == ".csv":
        # NocoDB's CSV download writes every value as text and an empty cell for null.
        # utf8-lossy: a byte that is not UTF-8 (a Latin-1 "é" from a spreadsheet) becomes
        # U+FFFD in its record; read strictly, it made the whole table unreadable.
        return pl.read_csv(
            path, infer_schema=False, missing_utf8_is_empty_string=False, encoding="utf8-lossy"
        )
    try:
        if path.suffix == ".json":
            table = pl.read_json(path, infer_schema_length=None)
        else:
            table = pl.read_ndjson(path, infer_schema_length=None)
    except pl.exceptions.PolarsError:
        table = _read_with_python(path)
    if (
        path.suffix == ".json"
        and "list" in table.columns
        and set(table.columns) <= {"list", "pageInfo"}
        and table.height == 1
        and isinstance(table.schema["list"], pl.List)
    ):
        # A page as the API returns it: {"list": [...records], "pageInfo": {...}}.
        table = table.select(pl.col("list").explode()).unnest("list")
    return table


def _read_with_python(path: Path) -> pl.DataFrame:
    """What polars' reader refuses: an unpaired surrogate (half an emoji, which UTF-8 cannot
    hold). Python's json reads it; the records are handed back to polars with it as NUL,
    which validation removes and counts."""
    rewritten = json.dumps(_python_rows(path), ensure_ascii=False).encode("utf-8")
    return pl.read_json(io.BytesIO(rewritten), infer_schema_length=None)


# The column of `_records_with_python`'s frame that holds each record's JSON.
_RECORD = "_record_as_json"


def _records_with_python(path: Path, fields: list[str]) -> pl.DataFrame:
    """Each record as JSON (`_RECORD`) beside `fields` as text, for a file no frame can hold:
    a field that is text in one record and an array or object in another. Validation then
    rejects each record whose required field is not a single value, with that reason, and
    keeps one whose optional field is not, with that value left empty. (A number no double
    holds is written back as Infinity here, which validation also names.)"""
    rows = _python_rows(path)

    def text(row: object, name: str) -> str | None:
        value = row.get(name) if isinstance(row, dict) else None
        if value is None or isinstance(value, list | dict):
            return None
        return value if isinstance(value, str) else json.dumps(value)

    columns = {name: [text(row, name) for row in rows] for name in dict.fromkeys(fields)}
    columns[_RECORD] = [json.dumps(row, ensure_ascii=False) for row in rows]
    return pl.DataFrame(columns, schema={name: pl.String() for name in columns})


def _table_with_python(path: Path) -> pl.DataFrame:
    """The file as a frame where no frame holds it as written (above): an array or object
    as its JSON text, a column of mixed kinds as text."""
    rows = [
        {
            name: json.dumps(value) if isinstance(value, list | dict) else value
            for name, value in row.items()
        }
        for row in _python_rows(path)
        if isinstance(row, dict)
    ]
    return pl.DataFrame(rows, infer_schema_length=None, strict=False)


def _python_rows(path: Path) -> list:
    """The file's records as Python reads them, each unpaired surrogate as NUL. A byte that
    is not UTF-8 (a Latin-1 "é") is read as a lone surrogate too (`surrogateescape`), so it
    costs its record that character, removed and counted by validation, not the whole
    table its read."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    if path.suffix == ".json":
        payload = json.loads(text)
        rows = payload["list"] if isinstance(payload, dict) else payload
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return lone_surrogates_as_nul(rows)


def _as_text(frame: pl.DataFrame, name: str) -> pl.Expr:
    if name not in frame.columns:
        return pl.lit(None, pl.String)
    return pl.col(name).cast(pl.String)


class ExportSource(RecordSource):
    """Reads each table's export file once per process and serves it day by day."""

    def __init__(
        self, folder: Path, schema: SourceSchema | None = None, first_day: date | None = None
    ):
        self.folder = Path(folder)
        self.schema = schema or SourceSchema()
        # The first daily partition (sources/days.py).
        self.first_day = first_day
        self._cache: dict[TableKind, tuple[tuple[int, int], pl.DataFrame]] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"export:{self.folder}"

    def path_for(self, kind: TableKind) -> Path:
        return self._file_of(self.schema.table(kind))

    def _file_of(self, stem: str) -> Path:
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
        event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
        created_field = self.schema.source_field(kind, "CreatedAt")
        try:
            table = _read_table(path)
        except pl.exceptions.PolarsError:
            if path.suffix == ".csv":
                raise
            table = _records_with_python(path, ["Id", event_field, created_field])
        record = (
            pl.col(_RECORD)
            if _RECORD in table.columns
            else pl.struct(pl.all()).struct.json_encode()
        )
        indexed = table.select(
            record.alias("record"),
            _as_text(table, "Id").alias("record_id"),
            filing_day_expr(
                parse_utc_timestamp(_as_text(table, event_field)),
                # Without a stored time, the file's: no record can be logged after its export.
                pl.coalesce(
                    parse_utc_timestamp(_as_text(table, created_field)),
                    pl.lit(datetime.fromtimestamp(stat.st_mtime, UTC)),
                ),
                self.first_day,
            ).alias("day"),
        )
        with self._lock:
            self._cache[kind] = (signature, indexed)
        return indexed

    def read_table(self, name: str, fields: list[str] | None = None) -> pl.DataFrame:
        path = self._file_of(name)
        try:
            table = _read_table(path)
        except pl.exceptions.PolarsError:
            if path.suffix == ".csv":
                raise
            table = _table_with_python(path)
        return table.select([f for f in fields if f in table.columns]) if fields else table

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
