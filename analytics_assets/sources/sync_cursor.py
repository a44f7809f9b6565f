"""The incremental sync's cursor: per table a watermark on the source's own clock, the ids
seen in the overlap window (so a record is requested once per version), and the days that
changed but are not partitions yet (today).

The watermark is the newest `UpdatedAt`/`CreatedAt` seen, never the sensor's clock, so a skew
between the sensor's host and NocoDB cannot lose records. Each tick asks again from the
watermark minus an overlap, which catches records that NocoDB stamped a little before the
watermark but committed after the previous tick (several app servers, slow transactions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from analytics_assets.sources.base import Change

CURSOR_VERSION = 1


@dataclass
class TableCursor:
    watermark: datetime | None = None
    # record id -> version (ISO), only versions within the overlap of the watermark.
    recent: dict[str, str] = field(default_factory=dict)

    def since(self, overlap: timedelta) -> datetime | None:
        return self.watermark - overlap if self.watermark else None

    def advance(self, changes: list[Change], overlap: timedelta) -> list[Change]:
        """Moves the watermark past `changes`; returns those not seen before (same id and
        version seen in an earlier tick is the overlap, not a change)."""
        fresh = [c for c in changes if self.recent.get(c.record_id) != c.version.isoformat()]
        versions = {**self.recent, **{c.record_id: c.version.isoformat() for c in changes}}
        if changes:
            newest = max(c.version for c in changes)
            self.watermark = max(self.watermark, newest) if self.watermark else newest
        if self.watermark:
            horizon = (self.watermark - overlap).isoformat()
            self.recent = {rid: v for rid, v in versions.items() if v >= horizon}
        return fresh


@dataclass
class SyncCursor:
    tables: dict[str, TableCursor] = field(default_factory=dict)
    pending_days: set[date] = field(default_factory=set)

    def table(self, kind: str) -> TableCursor:
        return self.tables.setdefault(kind, TableCursor())

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "tables": {
                    kind: {
                        "watermark": cursor.watermark.isoformat() if cursor.watermark else None,
                        "recent": cursor.recent,
                    }
                    for kind, cursor in sorted(self.tables.items())
                },
                "pending_days": sorted(day.isoformat() for day in self.pending_days),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | None) -> SyncCursor:
        """An empty cursor for a first tick; a cursor of another version is an error (it would
        silently restart or skip the sync)."""
        if not text:
            return cls()
        data = json.loads(text)
        if data.get("v") != CURSOR_VERSION:
            raise ValueError(f"Sync cursor version {data.get('v')!r}, expected {CURSOR_VERSION}")
        return cls(
            tables={
                kind: TableCursor(
                    watermark=datetime.fromisoformat(table["watermark"])
                    if table["watermark"]
                    else None,
                    recent=dict(table["recent"]),
                )
                for kind, table in data["tables"].items()
            },
            pending_days={date.fromisoformat(day) for day in data["pending_days"]},
        )
