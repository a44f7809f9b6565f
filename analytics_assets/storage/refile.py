"""Documents a MongoDB write of some days must file again under a neighbouring day.

A document is keyed without its day (a message by its conversation and id, a conversation by
its id), but the lake can hold its record on two days: NocoDB delivers a message again after
midnight, and both days keep a copy. MongoDB holds one document, filed under the day written
last. When that day is written again without the record (the source dropped its copy), the
write's stale delete removed the document, while the lake's other day still held the record:
MongoDB lacked the message until that other day was rebuilt.

So a write of some days first learns which keys leave them (`keys_leaving`, read before the
lake is written), and when it writes MongoDB it reads the lake's neighbouring days as they are
then (`neighbour_rows`) and files those records under their own day again
(`mongo.refile_documents`), but only documents still filed under the days being written: one
an erasure deleted meanwhile, or that another run filed under its own day since, is left
alone. Pure: polars and the lake, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import polars as pl

from analytics_assets.storage.collections import DAY_FIELD, CollectionSpec
from analytics_assets.storage.lake import Lake


def _keys_as_text(keys: list[str]) -> list[pl.Expr]:
    # As text: a day written by an older release can hold a key column of another type (all
    # null, stored as Null), and a join of two types fails the write for good.
    return [pl.col(key).cast(pl.String) for key in keys]


def keys_leaving(
    lake: Lake, table: str, spec: CollectionSpec, days: Sequence[str] | None, new: pl.DataFrame
) -> pl.DataFrame | None:
    """The keys (as text) the lake held on `days` before this write that `new`, the rows
    about to replace those days, no longer holds; None where there are none, which is nearly
    always. Reads only the key columns of `days`, before the lake is written."""
    keys = list(spec.id_fields)
    if (
        not days
        or DAY_FIELD in keys
        or DAY_FIELD not in new.columns
        or any(key not in new.columns for key in keys)
    ):
        return None
    try:
        before, _ = lake.read_days(table, [date.fromisoformat(day) for day in days], keys)
    except pl.exceptions.ColumnNotFoundError:
        return None  # days written before the key had all its fields: nothing was filed so
    if before is None or before.is_empty():
        return None
    as_text = _keys_as_text(keys)
    left = before.select(as_text).unique().join(new.select(as_text).unique(), on=keys,
                                                how="anti")  # fmt: skip
    return left if left.height else None


def neighbour_rows(
    lake: Lake, table: str, spec: CollectionSpec, days: Sequence[str], leaving: pl.DataFrame
) -> pl.DataFrame | None:
    """The rows of the days next to `days` (not among them) that hold a key of `leaving`,
    as the lake holds them now; one per key, the later day's. None where there are none."""
    keys = list(spec.id_fields)
    written = {date.fromisoformat(day) for day in days}
    around = {day + timedelta(days=step) for day in written for step in (-1, 1)} - written
    held, _ = lake.read_days(table, sorted(around))
    if held is None or any(key not in held.columns for key in keys):
        return None
    moving = held.join(leaving, left_on=_keys_as_text(keys), right_on=keys, how="semi")
    if moving.is_empty():
        return None
    return moving.sort(DAY_FIELD).unique(keys, keep="last", maintain_order=True)
