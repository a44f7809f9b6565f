"""A per-day list of a collection's keys in page order, so that a page of one or a few days
is read by `_id`.

The read API pages conversations by (start time, id) within a day range. A real MongoDB
answers that from its compound index; the embedded server (nx-27017) scans and sorts the
whole range on every request (about 50 ms a day of conversations, whatever the indexes),
while it answers `_id` lookups in about a millisecond. So when a day of a collection whose
spec names a `day_index` is written, its keys are written too, sorted, as one document of
`DAY_INDEX_COLLECTION` (`<collection>:<day>`); a page then reads those documents, walks the
keys from the cursor, and fetches the page's documents by `_id`.

Keys are (milliseconds since the epoch, id): BSON keeps datetimes to the millisecond, so a
cursor made from a stored document compares exactly. The list is a hint that never decides
what a page holds on its own: a key whose document has gone (erased, expired) or moved to
a day outside the page's is skipped, and a day written before the index existed has no
list, so the caller falls back to its query.
"""

from __future__ import annotations

import calendar
import heapq
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from analytics_assets.storage.collections import DAY_FIELD, RUN_FIELD, CollectionSpec

DAY_INDEX_COLLECTION = "day_index"


def epoch_ms(value: datetime) -> int:
    """A naive-UTC or aware datetime as whole milliseconds since the epoch (what BSON keeps)."""
    return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000


def index_id(collection: str, day: str) -> str:
    return f"{collection}:{day}"


def write_day_index(
    db: Database,
    spec: CollectionSpec,
    documents: Iterable[dict[str, Any]],
    days: Sequence[str] | None,
    run_id: str,
) -> int:
    """Writes the sorted keys of `documents` for each of `days` (None: each day they hold);
    a day among `days` without documents gets an empty list. Returns the lists written."""
    if spec.day_index is None:
        return 0
    time_field, id_field = spec.day_index
    if spec.id_fields != (id_field,):
        raise ValueError(f"{spec.name}: a day index's id field must be what `_id` is made of")
    keys: dict[str, list[tuple[int, str]]] = {day: [] for day in days or ()}
    for document in documents:
        day, started = document.get(DAY_FIELD), document.get(time_field)
        if day is None or not isinstance(started, datetime):
            continue  # not pageable by time: the fallback query still finds it
        keys.setdefault(day, []).append((epoch_ms(started), str(document[id_field])))
    if not keys:
        return 0
    db[DAY_INDEX_COLLECTION].bulk_write(
        [
            UpdateOne(
                {"_id": index_id(spec.name, day)},
                {
                    "$set": {
                        "collection": spec.name,
                        DAY_FIELD: day,
                        "keys": [list(key) for key in sorted(day_keys)],
                        RUN_FIELD: run_id,
                    }
                },
                upsert=True,
            )
            for day, day_keys in keys.items()
        ],
        ordered=False,
    )
    return len(keys)


def read_day_lists(db: Database, collection: str, days: Sequence[str]) -> dict[str, list]:
    """day -> its sorted keys, for the days of `collection` that have a list."""
    wanted = {index_id(collection, day): day for day in days}
    return {
        wanted[found["_id"]]: found["keys"]
        for found in db[DAY_INDEX_COLLECTION].find({"_id": {"$in": list(wanted)}})
    }


class DayListCache:
    """Key lists kept in memory for `ttl_s` seconds, so a page of a week does not read its
    7 lists on every request (11 ms of the embedded server's time, against 5 ms for the
    page's 51 documents). Safe to serve stale: a list only points, and the documents are
    read fresh, so a document erased or moved since is skipped; a conversation added to a
    day shows up once its day's list is read again, within `ttl_s`."""

    def __init__(self, ttl_s: float = 5.0, clock=time.monotonic, max_lists: int = 4096):
        self.ttl_s, self.clock, self.max_lists = ttl_s, clock, max_lists
        self._lists: dict[tuple[str, str, str], tuple[float, list]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()

    def read(self, db: Database, collection: str, days: Sequence[str]) -> dict[str, list]:
        now, found, missing = self.clock(), {}, []
        with self._lock:
            for day in days:
                kept = self._lists.get((db.name, collection, day))
                if kept is not None and now - kept[0] < self.ttl_s:
                    found[day] = kept[1]
                else:
                    missing.append(day)
        if missing:
            fresh = read_day_lists(db, collection, missing)
            with self._lock:
                # Expired lists go whenever new ones come; the count bound is a backstop.
                for key in [k for k, (at, _) in self._lists.items() if now - at >= self.ttl_s]:
                    del self._lists[key]
                if len(self._lists) + len(fresh) > self.max_lists:
                    self._lists.clear()
                for day, keys in fresh.items():
                    self._lists[(db.name, collection, day)] = (now, keys)
            found.update(fresh)
        return found


def page_by_day_index(
    db: Database,
    collection: str,
    days: Sequence[str],
    after: tuple[datetime, str] | None,
    count: int,
    lists: DayListCache | None = None,
) -> list[dict[str, Any]] | None:
    """Up to `count` documents of `collection` on `days`, in (time, id) order, after the
    cursor `after`; None where a day has no key list (the caller queries instead). `lists`:
    where the key lists come from (read from MongoDB each time without one)."""
    found_lists = (
        lists.read(db, collection, days) if lists else read_day_lists(db, collection, days)
    )
    if len(found_lists) < len(days):
        return None
    # Per day already sorted; merged, because a day's documents are filed by the filing
    # rule, not strictly by their start time.
    ordered: Iterator[list] = heapq.merge(*(found_lists[day] for day in days))
    if after is not None:
        cursor = [epoch_ms(after[0]), after[1]]
        ordered = (key for key in ordered if key > cursor)
    page: list[dict[str, Any]] = []
    # A list can be stale where a document moved to another day and only that day was
    # rewritten: a document counts only on the day it is now filed under, and once.
    wanted_days, seen = set(days), set()
    while len(page) < count:
        # Exactly what is missing: a key whose document has gone costs one more round.
        wanted = [key[1] for key in itertools.islice(ordered, count - len(page))]
        if not wanted:
            break
        found = {doc["_id"]: doc for doc in db[collection].find({"_id": {"$in": wanted}})}
        for key in wanted:
            document = found.get(key)
            if document is not None and key not in seen and document.get(DAY_FIELD) in wanted_days:
                seen.add(key)
                page.append(document)
    return page[:count]


def forget(db: Database, ids: Iterable[str]) -> int:
    """Removes `ids` from every key list (an erasure: a list must not keep naming an erased
    conversation, even though a page would skip it). Returns the keys removed."""
    unwanted = set(ids)
    if not unwanted:
        return 0
    removed, updates = 0, []
    for found in db[DAY_INDEX_COLLECTION].find({}):
        kept = [key for key in found["keys"] if key[1] not in unwanted]
        if len(kept) < len(found["keys"]):
            removed += len(found["keys"]) - len(kept)
            updates.append(UpdateOne({"_id": found["_id"]}, {"$set": {"keys": kept}}))
    if updates:
        db[DAY_INDEX_COLLECTION].bulk_write(updates, ordered=False)
    return removed
