"""When a daily report is due: the rule behind the daily report's freshness check.

A day's report is due once the day has ended and the morning deadline has passed: from
06:00 UTC on, yesterday's; before it, the day before yesterday's. A deployment over data
that ends (a fixed export, such as the bundled sample) can owe no report for a day after its
data: there the newest report due is that of the data's last day. A live source has no end,
so a deployment whose reports stopped is stale from the next deadline on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

DEADLINE_UTC = time(6, 0)


def last_deadline(now: datetime) -> datetime:
    """The latest 06:00 UTC at or before `now`."""
    today = now.astimezone(UTC).date()
    deadline = datetime.combine(today, DEADLINE_UTC, tzinfo=UTC)
    return deadline if now >= deadline else deadline - timedelta(days=1)


def report_day_due(now: datetime, data_end: date | None = None) -> date:
    """The newest day whose daily report must exist at `now`."""
    due = last_deadline(now).date() - timedelta(days=1)
    return min(due, data_end) if data_end is not None else due


def fresh_until(now: datetime) -> datetime:
    """When the next deadline makes another day due."""
    return last_deadline(now) + timedelta(days=1)
