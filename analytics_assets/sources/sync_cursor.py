"""The incremental sync's cursor: per table a watermark on the source's own clock and a
fingerprint per day of what the overlap window held, plus the days that changed but are not
partitions yet (today).

The watermark is the newest `UpdatedAt`/`CreatedAt` seen, never the sensor's clock, so a skew
between the sensor's host and NocoDB cannot lose records. Each tick asks again from the
watermark minus an overlap, which catches records that NocoDB stamped a little before the
watermark but committed after the previous tick (several app servers, slow transactions).

What the overlap returns again is recognised without remembering its ids: per day, an
order-free hash of the (id, version) pairs whose version lies in the overlap window below
the watermark. The next tick hashes the pairs it gets back in the same window; a day whose
hash differs gained a late record (or lost one), and is rebuilt. The cursor holds one short
entry per day touched within the overlap window, however many records a bulk load wrote (it
used to hold every id in the window: 5.3 MB after loading 147k records).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from analytics_assets.sources.base import Change

CURSOR_VERSION = 2
_MASK = (1 << 64) - 1


def window_fingerprints(changes: Iterable[Change]) -> dict[str, str]:
    """Per day (ISO), '<count>:<hash>' of the (id, version) pairs, whatever their order."""
    sums: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for change in changes:
        pair = f"{change.record_id}|{change.version.isoformat()}".encode()
        digest = int.from_bytes(hashlib.blake2b(pair, digest_size=8).digest(), "big")
        day = change.day.isoformat()
        sums[day] = (sums.get(day, 0) + digest) & _MASK
        counts[day] += 1
    return {day: f"{counts[day]}:{sums[day]:016x}" for day in sorted(sums)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _moment(text: str | None) -> datetime | None:
    """A time of the cursor; one without an offset (typed by hand, to replay) is UTC, as
    NocoDB's own are: compared with an aware one it failed every tick."""
    if not text:
        return None
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class TableCursor:
    watermark: datetime | None = None
    # Where the next scan starts (source clock): versions before it are settled.
    window_from: datetime | None = None
    # day (ISO) -> fingerprint of the pairs with a version in [window_from, watermark].
    window: dict[str, str] = field(default_factory=dict)
    # When (the sensor's clock) the watermark last moved.
    watermark_seen_at: datetime | None = None

    def since(self, overlap: timedelta) -> datetime | None:
        """Where the next scan starts. A watermark set back before `window_from` (to replay
        from a point in time, docs/operations.md) is where it starts then: `window_from` kept
        the scan at its recent start, and the replay did nothing."""
        if self.watermark is None:
            return None
        if self.window_from is None or self.window_from > self.watermark:
            return self.watermark - overlap
        return self.window_from

    def start_at(self, moment: datetime, overlap: timedelta, now: datetime) -> None:
        """A first tick: the sync begins at `moment`; what is older is taken as loaded."""
        self.watermark, self.window_from, self.watermark_seen_at = moment, moment - overlap, now

    def advance(
        self, changes: list[Change], overlap: timedelta, now: datetime | None = None
    ) -> dict[date, int]:
        """Takes a scan from `since(overlap)`; returns the days that changed, each with how
        many of its records are new or edited (0 where the window only shows that a record
        the last tick saw is gone). A record seen in an earlier tick with the same version
        is the overlap, not a change.

        The window is read again until `overlap` has passed (on the sensor's clock) since
        the watermark last moved: by then everything stamped up to the watermark has been
        committed and read, so the next scan starts at the watermark's second. After a bulk
        load and no new writes, a tick reads the load's last second, not the load."""
        now = now or datetime.now(UTC)
        touched: Counter[date] = Counter()
        previous = self.watermark
        if previous is None:
            touched.update(change.day for change in changes)
        else:
            touched.update(change.day for change in changes if change.version > previous)
            low = self.since(overlap)
            seen_window = [change for change in changes if low <= change.version <= previous]
            again = window_fingerprints(seen_window)
            for day in set(again) | set(self.window):
                if again.get(day) != self.window.get(day):
                    late = [c for c in seen_window if c.day.isoformat() == day]
                    touched[date.fromisoformat(day)] += max(
                        0, len(late) - int(self.window.get(day, "0:").split(":")[0])
                    )
        newest = max((change.version for change in changes), default=None)
        if newest is not None and (previous is None or newest > previous):
            self.watermark, self.watermark_seen_at = newest, now
        if self.watermark is not None:
            settled = self.watermark_seen_at and now - self.watermark_seen_at >= overlap
            start = self.since(overlap) or self.watermark - overlap
            # Settled: only the watermark's own second stays in the window (NocoDB's date
            # filters are to the second, so a scan cannot start between two records of it).
            self.window_from = max(
                start,
                self.watermark.replace(microsecond=0) if settled else self.watermark - overlap,
            )
            self.window = window_fingerprints(
                c for c in changes if self.window_from <= c.version <= self.watermark
            )
        return dict(touched)


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
                        "watermark": _iso(cursor.watermark),
                        "window_from": _iso(cursor.window_from),
                        "window": cursor.window,
                        "watermark_seen_at": _iso(cursor.watermark_seen_at),
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
        if data.get("v") == 1:
            # Version 1 kept ids instead of fingerprints: keep its watermarks; the first tick
            # sees its whole overlap window as changed and rebuilds those days once.
            data = {**data, "tables": {kind: {"watermark": table["watermark"], "window": {}}
                                       for kind, table in data["tables"].items()}}  # fmt: skip
        elif data.get("v") != CURSOR_VERSION:
            raise ValueError(f"Sync cursor version {data.get('v')!r}, expected {CURSOR_VERSION}")
        return cls(
            tables={
                kind: TableCursor(
                    watermark=_moment(table["watermark"]),
                    window_from=_moment(table.get("window_from")),
                    window=dict(table["window"]),
                    watermark_seen_at=_moment(table.get("watermark_seen_at")),
                )
                for kind, table in data["tables"].items()
            },
            pending_days={date.fromisoformat(day) for day in data["pending_days"]},
        )
