"""What the reconciliation finds on a day: the records the source files there against the
lake's copies of them, by id and by version.

Ids alone cannot see an edit that never reached the lake (the change sensor's cursor moves
on when its tick is stored, so a run that fails through all its retries loses the edit it
was for), and they read a record edited onto another day as deleted from its old one.
Versions and the ids the source files elsewhere tell those apart. Pure: no Dagster, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl

from analytics_assets.sources.nocodb import record_version


@dataclass(frozen=True)
class DayDifference:
    # In the source on this day, not in the lake.
    missing: tuple[str, ...] = ()
    # In the lake on this day, nowhere in the source.
    deleted: tuple[str, ...] = ()
    # In the lake on this day, filed on another day in the source (its event time edited).
    moved: tuple[str, ...] = ()
    # On this day in both, with a newer version in the source: an edit the lake lacks.
    stale: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.missing or self.deleted or self.moved or self.stale)

    def needs_rebuild(self, *, remove_deleted: bool) -> bool:
        """Deletions only where the deployment removes them; the rest is always repaired."""
        return bool(self.missing or self.moved or self.stale or (remove_deleted and self.deleted))

    def counts(self, kind: str) -> dict[str, int]:
        return {
            f"{what}_{kind}": len(ids)
            for what, ids in (
                ("missing", self.missing),
                ("deleted", self.deleted),
                ("moved", self.moved),
                ("stale", self.stale),
            )
            if ids
        }


def compare_day(
    in_lake: Mapping[str, str | None],
    in_source: Mapping[str, str | None],
    source_ids: Container[str],
) -> DayDifference:
    """One day of one table: `in_lake` and `in_source` map record id -> version;
    `source_ids` holds every id the source has, whatever its day."""
    gone = in_lake.keys() - in_source.keys()
    moved = {record_id for record_id in gone if record_id in source_ids}
    return DayDifference(
        missing=tuple(sorted(in_source.keys() - in_lake.keys())),
        deleted=tuple(sorted(gone - moved)),
        moved=tuple(sorted(moved)),
        stale=tuple(
            sorted(
                record_id
                for record_id in in_lake.keys() & in_source.keys()
                if in_lake[record_id] != in_source[record_id]
            )
        ),
    )


def _field_path(name: str) -> str:
    # Bracket notation: a field's name may hold spaces or dots.
    return f"$[{json.dumps(name)}]"


def lake_versions(
    raw: pl.LazyFrame, version_fields: dict[str, tuple[str, str]]
) -> dict[str, dict[date, dict[str, str | None]]]:
    """Per table, per day, record id -> version of the raw records as the lake holds them,
    read from the stored record the way the source's version is (`record_version`).
    `version_fields`: per table, its (updated, created) fields. One streaming scan of all
    of them: the records are read whole (their text is most of the lake's bytes)."""
    conditions = {kind: pl.col("table") == kind for kind in version_fields}
    fetched = (
        pl.col("fetched_at")
        if "fetched_at" in raw.collect_schema().names()
        else pl.lit(None, pl.Datetime("us", "UTC"))
    )

    def path_match(position: int) -> pl.Expr:
        return pl.coalesce(
            pl.when(conditions[kind]).then(
                pl.col("record").str.json_path_match(_field_path(fields[position]))
            )
            for kind, fields in version_fields.items()
        )

    frame = (
        raw.filter(pl.col("record_id").is_not_null() & pl.any_horizontal(*conditions.values()))
        .with_columns(path_match(0).alias("updated"), path_match(1).alias("created"))
        .select(
            "table",
            "day",
            "record_id",
            "updated",
            "created",
            # A record polars' JSON path cannot read (an unpaired surrogate, kept as its
            # escape) is read again in Python below: its version read as missing, the record
            # as stale, and its day was rebuilt every day.
            pl.when(pl.col("updated").is_null() & pl.col("created").is_null())
            .then(pl.col("record"))
            .alias("unreadable"),
            fetched.alias("fetched_at"),
        )
        .collect(engine="streaming")
    )
    versions: dict[str, dict[date, dict[str, str | None]]] = {kind: {} for kind in version_fields}
    for kind, day, record_id, updated, created, unreadable, fetched_at in frame.iter_rows():
        updated_field, created_field = version_fields[kind]
        if updated is None and created is None and unreadable is not None:
            try:
                record = json.loads(unreadable)
            except ValueError:
                record = {}
            version = record_version(record if isinstance(record, dict) else {},
                                     updated_field, created_field)  # fmt: skip
        else:
            version = record_version({"updated": updated, "created": created}, "updated",
                                      "created")  # fmt: skip
        versions[kind].setdefault(day, {})[record_id] = _confirmed(version, fetched_at)
    return versions


# NocoDB stores its times to the second: an edit within the second a copy was read in has
# the version the copy has, and the lake kept the copy from before it for good (a chatbot
# that writes a reply, then its tokens and latency, within one second).
_VERSION_RESOLUTION = timedelta(seconds=1)


def _confirmed(version: str | None, fetched_at: datetime | None) -> str | None:
    """The lake's version, or one that matches no source version (its day is read again)
    where the copy was read within its version's second: the record may have been edited
    after the read in that same second. Read again a second later, it is confirmed."""
    if version is None or fetched_at is None:
        return version
    if fetched_at < datetime.fromisoformat(version) + _VERSION_RESOLUTION:
        return f"{version} (read within its second)"
    return version
