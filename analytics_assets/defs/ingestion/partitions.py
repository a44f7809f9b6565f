"""Daily partitions by the UTC day of each record's event time."""

from __future__ import annotations

import os
from datetime import date, timedelta

from dagster import DailyPartitionsDefinition, TimeWindow

# The first day a deployment keeps. Read once at import: Dagster needs it to list partitions.
PARTITIONS_START = os.environ.get("ANALYTICS_PARTITIONS_START", "2026-01-01")

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")


def days_in(window: TimeWindow) -> list[date]:
    """The days a run covers: one for a partition, several for a single-run backfill."""
    first = window.start.date()
    count = (window.end.date() - first).days
    return [first + timedelta(days=offset) for offset in range(count)]
