"""The raw layer: records exactly as the source returned them, one JSON text per record.

Keeping the record as text means a schema change at the source never breaks the pull; the
typed layer decides what is valid and sends the rest to `processing_errors`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import polars as pl

from analytics_assets.transforms.timestamps import TIMESTAMP_DTYPE

RAW_SCHEMA: dict[str, pl.DataType] = {
    "table": pl.String(),
    "day": pl.Date(),
    "page": pl.Int32(),
    "record_id": pl.String(),
    "record": pl.String(),
    "fetched_at": TIMESTAMP_DTYPE,
    "source": pl.String(),
}


def empty_raw_frame() -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_SCHEMA)


def raw_frame_from_records(
    records: Sequence[dict[str, Any]],
    *,
    table: str,
    day: date,
    page: int,
    fetched_at: datetime,
    source: str,
    id_field: str | None = "Id",
) -> pl.DataFrame:
    """One page of source records -> raw rows (the record kept verbatim as JSON)."""
    record_ids = [
        None if id_field is None or record.get(id_field) is None else str(record[id_field])
        for record in records
    ]
    # An unpaired surrogate (a JSON "\\ud800" from the source) cannot be stored as UTF-8 and
    # would fail the whole page; writing it back as its JSON escape keeps the record intact
    # and lets validation strip it.
    texts = [
        json.dumps(record, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
        for record in records
    ]
    return pl.DataFrame(
        {
            "table": [table] * len(records),
            "day": [day] * len(records),
            "page": [page] * len(records),
            "record_id": record_ids,
            "record": texts,
            "fetched_at": [fetched_at] * len(records),
            "source": [source] * len(records),
        },
        schema=RAW_SCHEMA,
    )


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogates_as_nul(value: Any) -> Any:
    """`value` (JSON as Python decodes it) with every unpaired surrogate (half an emoji,
    which UTF-8 cannot hold) as NUL, which validation removes and counts with the other
    control characters. Python's json pairs the halves of a character itself, so what is
    still a surrogate is unpaired."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\x00", value)
    if isinstance(value, dict):
        return {
            lone_surrogates_as_nul(key): lone_surrogates_as_nul(item) for key, item in value.items()
        }
    if isinstance(value, list):
        return [lone_surrogates_as_nul(item) for item in value]
    return value
