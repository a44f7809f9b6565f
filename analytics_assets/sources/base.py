"""What every record source gives the raw layer: one table's records for one UTC day."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime

import polars as pl

from analytics_assets.sources.schema import TableKind


@dataclass
class FetchResult:
    frame: pl.DataFrame  # rows in transforms.raw.RAW_SCHEMA
    pages: int
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """A record created or edited in the source: its id, its version (the source's own
    `UpdatedAt`, else `CreatedAt`) and the day partition it belongs to."""

    record_id: str
    version: datetime
    day: date
    # Edited since it was created (the source set its `UpdatedAt`): it may have left the day
    # an earlier pull filed it under.
    edited: bool = False


@dataclass
class DayVersions:
    """What the reconciliation compares with the lake: per day asked, each record the source
    files there with its version (ISO, UTC; the source's `UpdatedAt`, else `CreatedAt`), and
    every id the source holds, whatever its day (so a record the lake holds on one day and the
    source on another reads as moved, not deleted)."""

    by_day: dict[date, dict[str, str | None]]
    all_ids: set[str]
    # The record fields a version is read from (updated, created): the lake's copies of the
    # records are read the same way.
    version_fields: tuple[str, str]
    # How many records the source files on each day, every day (not only those asked): a day
    # the lake lacks although the source has records on it (a run that failed for good).
    records_per_day: Counter[date] = field(default_factory=Counter)
    # The day the source files each record on, every record: where a record the lake holds
    # on one day moved to (the reconciliation builds that day too, wherever it is).
    day_of: dict[str, date] = field(default_factory=dict)


@dataclass
class ChangeScan:
    changes: list[Change]
    requests: int
    seconds: float


class RecordSource(ABC):
    # Sources that can list what changed since a point in time (the incremental sensor) and
    # list the record ids of days (the deletion reconciliation).
    supports_changes = False

    @abstractmethod
    def fetch_day(self, kind: TableKind, day: date) -> FetchResult:
        """Every record of the table whose event time falls on `day` (UTC).

        Records without an event time are assigned the day NocoDB stored them (`CreatedAt`),
        so they reach validation and land in `processing_errors` instead of vanishing.
        """

    def fetch_ranges(
        self, kinds: list[TableKind], days: list[date], workers: int = 4
    ) -> dict[TableKind, dict[date, FetchResult]]:
        """Every record of each table of `kinds` on each of `days`, each table read in one
        pass and split by day locally. A table left out has no faster way than day by day
        (the caller then fetches each of its days); this default leaves every table out."""
        return {}

    def fetch_range(
        self, kind: TableKind, days: list[date], workers: int = 4
    ) -> dict[date, FetchResult] | None:
        """`fetch_ranges` of one table; None where it is left to day-by-day fetches."""
        return self.fetch_ranges([kind], days, workers).get(kind)

    def stats(self) -> dict[str, float]:
        """Running counters of the source's requests (requests, retries, throttled waits)."""
        return {}

    @abstractmethod
    def read_table(self, name: str, fields: list[str] | None = None) -> pl.DataFrame:
        """Every row of a side table the team keeps beside the conversations (corrections,
        stored or reference translations), by its name in the source; only `fields` when
        given. Side tables are small: read whole, not by day."""

    @abstractmethod
    def describe(self) -> str:
        """Where the records come from, fit for logs and metadata (never a secret)."""

    def changes_since(self, kind: TableKind, since: datetime) -> ChangeScan:
        """Records of the table created or edited at or after `since` (source clock)."""
        raise NotImplementedError(f"{self.describe()} cannot list changes")

    def latest_version(self, kind: TableKind) -> datetime | None:
        """The newest `UpdatedAt`/`CreatedAt` of the table; None when it is empty."""
        raise NotImplementedError(f"{self.describe()} cannot list changes")

    def versions_by_day(self, kind: TableKind, days: list[date], workers: int = 4) -> DayVersions:
        """The records `fetch_day` would return for each of `days`: ids and versions only."""
        raise NotImplementedError(f"{self.describe()} cannot list a day's ids")
