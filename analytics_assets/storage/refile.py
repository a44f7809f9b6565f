"""Which rows a MongoDB write of some days must file again under a neighbouring day.

A document is keyed without its day (a message by its conversation and id, a conversation by
its id), but the lake can hold its record on two days: NocoDB delivers a message again after
midnight, and both days keep a copy. MongoDB holds one document, filed under the day written
last. When that day is written again without the record (the source dropped its copy), the
write's stale delete removed the document, while the lake's other day still held the record:
MongoDB lacked the message until that other day was rebuilt. The write now takes the other
day's row along, filed under that day. Pure: polars and the lake, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl

from analytics_assets.storage.collections import DAY_FIELD, CollectionSpec
from analytics_assets.storage.lake import Lake


def rows_leaving_for_a_neighbour(
    lake: Lake, table: str, spec: CollectionSpec, days: Sequence[str] | None, new: pl.DataFrame
) -> pl.DataFrame | None:
    """The lake rows of the days next to `days` whose keys the lake held on `days` before this
    write and `new` (what is about to replace those days) no longer holds; one per key, the
    later day's. None where there are none, which is nearly always: read before the lake is
    written. Only the key columns of the written days are read; the neighbours only when a
    key left."""
    keys = list(spec.id_fields)
    if (
        not days
        or DAY_FIELD in keys
        or DAY_FIELD not in new.columns
        or any(key not in new.columns for key in keys)
    ):
        return None
    written = [date.fromisoformat(day) for day in days]
    try:
        before, _ = lake.read_days(table, written, columns=keys)
    except pl.exceptions.ColumnNotFoundError:
        return None  # days written before the key had all its fields: nothing was filed so
    if before is None or before.is_empty():
        return None
    left = before.unique().join(new.select(keys).unique(), on=keys, how="anti")
    if left.is_empty():
        return None
    around = {day + timedelta(days=step) for day in written for step in (-1, 1)}
    held, _ = lake.read_days(table, sorted(around - set(written)))
    if held is None:
        return None
    moving = held.join(left, on=keys, how="semi")
    if moving.is_empty():
        return None
    return moving.sort(DAY_FIELD).unique(keys, keep="last", maintain_order=True)
