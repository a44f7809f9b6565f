"""What every record source gives the raw layer: one table's records for one UTC day."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from analytics_assets.sources.schema import TableKind


@dataclass
class FetchResult:
    frame: pl.DataFrame  # rows in transforms.raw.RAW_SCHEMA
    pages: int
    stats: dict[str, float] = field(default_factory=dict)


class RecordSource(ABC):
    @abstractmethod
    def fetch_day(self, kind: TableKind, day: date) -> FetchResult:
        """Every record of the table whose event time falls on `day` (UTC).

        Records without an event time are assigned the day NocoDB stored them (`CreatedAt`),
        so they reach validation and land in `processing_errors` instead of vanishing.
        """

    @abstractmethod
    def describe(self) -> str:
        """Where the records come from, fit for logs and metadata (never a secret)."""
