"""A live NocoDB as a record source: one day of one table per query, streamed page by page."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime

import polars as pl

from analytics_assets.nocodb.client import NocoDBClient, and_filters, blank_filter, day_filter
from analytics_assets.nocodb.errors import NocoDBNotFoundError
from analytics_assets.sources.base import FetchResult, RecordSource
from analytics_assets.sources.schema import (
    EVENT_TIME_FIELD,
    KEY_FIELD,
    SYSTEM_FIELDS,
    SourceSchema,
    TableKind,
)
from analytics_assets.transforms.raw import empty_raw_frame, raw_frame_from_records


class NocoDBSource(RecordSource):
    def __init__(
        self,
        client: NocoDBClient,
        schema: SourceSchema | None = None,
        *,
        base_id: str | None = None,
    ):
        self.client = client
        self.schema = schema or SourceSchema()
        self.base_id = base_id

    def describe(self) -> str:
        return f"nocodb:{self.client.base_url}"

    def _fields(self, kind: TableKind, columns: dict[str, str]) -> list[str]:
        """The mapped fields to request; a missing mapped field is a configuration error."""
        wanted = list(dict.fromkeys(self.schema.field_map(kind).values()))
        missing = [name for name in wanted if name not in columns and name not in SYSTEM_FIELDS]
        if missing:
            raise NocoDBNotFoundError(
                f"NocoDB table {self.schema.table(kind)!r} has no field(s) {missing}; "
                f"it has {list(columns)}. Map them in the source schema settings."
            )
        return [name for name in wanted if name in columns]

    def fetch_day(self, kind: TableKind, day: date) -> FetchResult:
        info = self.client.table_info(self.schema.table(kind), base_id=self.base_id)
        fields = self._fields(kind, info.columns)
        primary_key = info.primary_key
        if primary_key:
            fields.append(primary_key)
        event_field = self.schema.source_field(kind, EVENT_TIME_FIELD[kind])
        created_field = self.schema.source_field(kind, "CreatedAt")
        # Offset paging is only stable over a unique sort key: the row id, else the record key.
        sort_key = primary_key or self.schema.source_field(kind, KEY_FIELD[kind])
        queries = [day_filter(event_field, day)]
        if created_field in info.columns:
            queries.append(and_filters(blank_filter(event_field), day_filter(created_field, day)))
        frames = [empty_raw_frame()]
        pages = 0
        requests_before = self.client.stats.requests
        started = time.perf_counter()
        for where in queries:
            for page in self.client.iter_pages(info.id, where=where, sort=sort_key, fields=fields):
                if page.records:
                    frames.append(
                        raw_frame_from_records(
                            page.records,
                            table=kind,
                            day=day,
                            page=pages,
                            fetched_at=datetime.now(UTC),
                            source=f"{self.describe()}/{info.id}",
                            id_field=primary_key,
                        )
                    )
                pages += 1
        frame = pl.concat(frames)
        return FetchResult(
            frame=frame,
            pages=pages,
            stats={
                "records": frame.height,
                "requests": self.client.stats.requests - requests_before,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
