"""Which daily partition a record is filed under. One rule for every path that reads the
source (a day's queries, a range read, the change sensor, a file export), so a record is
fetched by exactly one day, whichever path fetched it.

A record belongs to the UTC day of its event time. A record whose event time cannot be a
day of this deployment (blank or unreadable, before the first partition, or later than the
moment the source stored it) is filed under the day the source stored it instead: there
validation sees that its event time is not that day and rejects it into
`processing_errors` with the reason, so it is counted in that day's error rate instead of
vanishing between partitions (a 1970 or 2100 `created_at` used to be in neither the lake
nor the errors).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

# An event logged more than this after the source stored the record happened in the future
# of its own write: a broken clock or a typo (2100), not a day to wait for. A day leaves
# room for clock skew between the chatbot's servers and NocoDB's.
FUTURE_TOLERANCE = timedelta(days=1)


def is_fileable(event: datetime, stored: datetime | None, first_day: date | None) -> bool:
    """Whether an event time names a day this deployment keeps records under."""
    if first_day is not None and event.date() < first_day:
        return False
    return stored is None or event <= stored + FUTURE_TOLERANCE


def filing_day(
    event: datetime | None, stored: datetime | None, first_day: date | None
) -> date | None:
    """The day a record is filed under (see the module's docstring); None when it has
    neither a usable event time nor a stored time."""
    if event is not None and is_fileable(event, stored, first_day):
        return event.date()
    return stored.date() if stored is not None else None


def filing_day_expr(event: pl.Expr, stored: pl.Expr, first_day: date | None) -> pl.Expr:
    """`filing_day` over UTC datetime columns."""
    in_range = event.is_not_null() & (
        stored.is_null() | (event <= stored + pl.duration(days=FUTURE_TOLERANCE.days))
    )
    if first_day is not None:
        in_range = in_range & (event.dt.date() >= pl.lit(first_day))
    return pl.when(in_range).then(event.dt.date()).otherwise(stored.dt.date())
