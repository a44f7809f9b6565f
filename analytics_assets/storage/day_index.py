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

Where the spec names `day_index_labels` (a conversation's topic, intent, model, ...), each
list also keeps every key's values of those fields, aligned with the keys, so a page
filtered by them walks the matching keys instead of a query the embedded server answers by
reading whole documents in start-time order and testing each. The values only narrow what is
fetched: a fetched document must still hold the filter's values (one relabeled since is
skipped). What they cannot show is a document relabeled *to* the filter's value behind the
list's back; every write that adds or changes a day's documents goes through
`storage/mongo.replace_days`, which removes the day's list before it writes the documents
and writes it again after them, so a write that fails half-way leaves the day without a
stored list (answered by the query), never with one that disagrees with its documents.
Labels count only when written by the run that wrote the keys (`LABELS_RUN_FIELD`), so
keys rewritten by a version that knew no labels do not pass with the old ones. The API
keeps the lists it read for a few seconds (`DayListCache`): for that long a conversation
relabeled *to* a filter's value may be missing from that filter's pages.

A list is one document, so MongoDB's 16 MB document limit bounds a day at roughly 80,000
conversations with the labels (about 200 bytes a key), 240,000 without.
"""

from __future__ import annotations

import bisect
import calendar
import heapq
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.database import Database

from analytics_assets.storage.collections import COLLECTIONS, DAY_FIELD, RUN_FIELD, CollectionSpec

DAY_INDEX_COLLECTION = "day_index"
# The run that wrote a list's labels; they count only beside keys of the same run.
LABELS_RUN_FIELD = "labels_run"


def epoch_ms(value: datetime) -> int:
    """A naive-UTC or aware datetime as whole milliseconds since the epoch (what BSON keeps)."""
    return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000


def index_id(collection: str, day: str) -> str:
    return f"{collection}:{day}"


# Label combinations a day's list remembers the matching keys of (`DayList.matching`); past
# it they are forgotten, so a client asking for many values cannot grow a list without end.
MAX_REMEMBERED_FILTERS = 64


@dataclass
class DayList:
    """One day's keys in page order ([ms, id] pairs) and, where the list was written with
    them, each key's label values (field -> one value per key, in the keys' order)."""

    keys: list[list]
    labels: dict[str, list] | None = None
    # Filter -> its matching keys, worked out once per list read. Unlocked: under CPython a
    # race costs at most the same work twice.
    _matching: dict[tuple, list[list]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    @classmethod
    def of_document(cls, document: Mapping[str, Any]) -> DayList:
        labels, keys = document.get("labels"), document["keys"]
        if labels is not None and (
            document.get(LABELS_RUN_FIELD) != document.get(RUN_FIELD)
            or any(len(values) != len(keys) for values in labels.values())
        ):
            labels = None  # left by another writer of the keys, or not aligned with them
        return cls(keys=keys, labels=labels)

    def matching(self, wanted: Mapping[str, str]) -> list[list] | None:
        """The keys whose label values equal `wanted`'s, in order (every key without a
        filter); None when the list was written without one of those fields."""
        if not wanted:
            return self.keys
        if self.labels is None or any(name not in self.labels for name in wanted):
            return None
        remembered = tuple(sorted(wanted.items()))
        found = self._matching.get(remembered)
        if found is None:
            columns = [(self.labels[name], value) for name, value in remembered]
            found = [
                key
                for position, key in enumerate(self.keys)
                if all(values[position] == value for values, value in columns)
            ]
            if len(self._matching) >= MAX_REMEMBERED_FILTERS:
                self._matching.clear()
            self._matching[remembered] = found
        return found


def remove_day_lists(db: Database, spec: CollectionSpec, days: Sequence[str] | None) -> None:
    """Removes the lists of `days` (None: all the collection's) before they are rewritten,
    so a write that stops half-way leaves those days to the query (module docstring)."""
    if spec.day_index is None:
        return
    if days is None:
        db[DAY_INDEX_COLLECTION].delete_many({"collection": spec.name})
    elif days:
        ids = [index_id(spec.name, day) for day in days]
        db[DAY_INDEX_COLLECTION].delete_many({"_id": {"$in": ids}})


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
    label_fields = spec.day_index_labels
    # day -> (ms, id, (label values...)) per document
    entries: dict[str, list[tuple[int, str, tuple]]] = {day: [] for day in days or ()}
    for document in documents:
        day, started = document.get(DAY_FIELD), document.get(time_field)
        if day is None or not isinstance(started, datetime):
            continue  # not pageable by time: the fallback query still finds it
        values = tuple(document.get(name) for name in label_fields)
        entries.setdefault(day, []).append((epoch_ms(started), str(document[id_field]), values))
    if not entries:
        return 0

    def day_list(day: str, day_entries: list[tuple[int, str, tuple]]) -> dict[str, Any]:
        day_entries.sort(key=lambda entry: (entry[0], entry[1]))
        listed = {
            "collection": spec.name,
            DAY_FIELD: day,
            "keys": [[started, key] for started, key, _ in day_entries],
            RUN_FIELD: run_id,
        }
        if label_fields:
            listed["labels"] = {
                name: [values[position] for _, _, values in day_entries]
                for position, name in enumerate(label_fields)
            }
            listed[LABELS_RUN_FIELD] = run_id
        return listed

    db[DAY_INDEX_COLLECTION].bulk_write(
        [
            UpdateOne(
                {"_id": index_id(spec.name, day)}, {"$set": day_list(day, day_entries)}, upsert=True
            )
            for day, day_entries in entries.items()
        ],
        ordered=False,
    )
    return len(entries)


def read_day_lists(db: Database, collection: str, days: Sequence[str]) -> dict[str, DayList]:
    """day -> its list, for the days of `collection` that have one."""
    wanted = {index_id(collection, day): day for day in days}
    return {
        wanted[found["_id"]]: DayList.of_document(found)
        for found in db[DAY_INDEX_COLLECTION].find({"_id": {"$in": list(wanted)}})
    }


class DayListCache:
    """Key lists kept in memory for `ttl_s` seconds, so a page of a week does not read its
    7 lists on every request (11 ms of the embedded server's time, against 5 ms for the
    page's 51 documents). Safe to serve stale: a list only points, and the documents are
    read fresh, so a document erased, moved or relabeled since is skipped; a conversation
    added to a day shows up once its day's list is read again, and a day written for the
    first time once the days are listed again (`days`): within `ttl_s` and one read."""

    def __init__(self, ttl_s: float = 5.0, clock=time.monotonic, max_lists: int = 4096):
        self.ttl_s, self.clock, self.max_lists = ttl_s, clock, max_lists
        # (database, collection, day) -> (read at, its list; None: the day has none)
        self._lists: dict[tuple[str, str, str], tuple[float, DayList | None]] = {}
        self._days: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()  # guards the two dicts
        self._refreshing = threading.Lock()  # one read of expired lists at a time

    def clear(self) -> None:
        with self._lock:
            self._lists.clear()
            self._days.clear()

    def days(self, db: Database, collection: str) -> list[str]:
        """The days `collection` holds documents of, in order: one `distinct`, which the
        collection's `day` index answers (1.4 ms on the sample), kept like the lists."""
        key = (db.name, collection)
        kept = self._days.get(key)
        if kept is not None and self.clock() - kept[0] < self.ttl_s:
            return kept[1]
        if not self._start_refresh(expired_at_hand=kept is not None):
            return kept[1]
        try:
            kept = self._days.get(key)  # another request may have just read them
            if kept is not None and self.clock() - kept[0] < self.ttl_s:
                return kept[1]
            now = self.clock()
            days = db[collection].distinct(DAY_FIELD)
            found = sorted(day for day in days if isinstance(day, str))
            with self._lock:
                self._days[key] = (now, found)
            return found
        finally:
            self._refreshing.release()

    def read(self, db: Database, collection: str, days: Sequence[str]) -> dict[str, DayList]:
        """day -> its list, for the days of `days` that have one."""
        found, missing, expired = self._kept(db, collection, days)
        if not missing:
            return found
        if not self._start_refresh(expired_at_hand=len(expired) == len(missing)):
            found.update(expired)
            return found
        try:
            again, missing, _ = self._kept(db, collection, missing)
            found.update(again)
            if not missing:
                return found
            now = self.clock()
            fresh = read_day_lists(db, collection, missing)
            with self._lock:
                # Expired lists go whenever new ones come; the count bound is a backstop.
                for key in [k for k, (at, _) in self._lists.items() if now - at >= self.ttl_s]:
                    del self._lists[key]
                if len(self._lists) + len(missing) > self.max_lists:
                    self._lists.clear()
                # A day without a list is remembered too: its pages go to the query without
                # asking again on every request.
                for day in missing:
                    self._lists[(db.name, collection, day)] = (now, fresh.get(day))
        finally:
            self._refreshing.release()
        found.update(fresh)
        return found

    def _start_refresh(self, *, expired_at_hand: bool) -> bool:
        """Whether this request is to read what has expired (holding `_refreshing`, which
        it then releases). One reader at a time: when a read is under way, a request that
        has the expired copies at hand serves those (a few milliseconds older) instead of
        waiting; one that has nothing waits for the read, then reads what is still missing."""
        if expired_at_hand:
            return self._refreshing.acquire(blocking=False)
        self._refreshing.acquire()
        return True

    def _kept(
        self, db: Database, collection: str, days: Sequence[str]
    ) -> tuple[dict[str, DayList], list[str], dict[str, DayList]]:
        """The lists of `days` kept and fresh, the days to read again (not kept or expired),
        and the expired lists of those days that are still kept. A day known to have no
        list is in none of them while that is fresh."""
        now, found, missing, expired = self.clock(), {}, [], {}
        with self._lock:
            for day in days:
                kept = self._lists.get((db.name, collection, day))
                if kept is not None and now - kept[0] < self.ttl_s:
                    if kept[1] is not None:
                        found[day] = kept[1]
                else:
                    missing.append(day)
                    if kept is not None and kept[1] is not None:
                        expired[day] = kept[1]
        return found, missing, expired


def _ordered_keys(
    day_lists: Sequence[DayList],
    label_filter: Mapping[str, str],
    after: tuple[datetime, str] | None,
) -> Iterator[list] | None:
    """The keys of the lists matching `label_filter` after the cursor, in (time, id) order;
    None where a list was written without one of its fields."""
    cursor = [epoch_ms(after[0]), after[1]] if after is not None else None
    per_day: list[Iterator[list]] = []
    for listed in day_lists:
        keys = listed.matching(label_filter)
        if keys is None:
            return None
        start = bisect.bisect_right(keys, cursor) if cursor is not None else 0
        per_day.append(itertools.islice(keys, start, None))
    # Per day already sorted; merged, because a day's documents are filed by the filing
    # rule, not strictly by their start time.
    return heapq.merge(*per_day)


def page_by_day_index(
    db: Database,
    collection: str,
    days: Sequence[str],
    after: tuple[datetime, str] | None,
    count: int,
    lists: DayListCache | None = None,
    label_filter: Mapping[str, str] | None = None,
) -> list[dict[str, Any]] | None:
    """Up to `count` documents of `collection` on `days` whose fields equal `label_filter`'s
    values, in (time, id) order, after the cursor `after`; None where a day has no list, or
    a list without one of the filter's fields (the caller queries instead). `lists`: where
    the lists come from (read from MongoDB each time without one)."""
    label_filter = dict(label_filter or {})
    found_lists = (
        lists.read(db, collection, days) if lists else read_day_lists(db, collection, days)
    )
    if len(found_lists) < len(days):
        return None
    ordered = _ordered_keys([found_lists[day] for day in days], label_filter, after)
    if ordered is None:
        return None
    page: list[dict[str, Any]] = []
    # A list can be stale where a document moved to another day or was relabeled and only
    # that day was rewritten: a document counts only on the day it is now filed under, with
    # the labels it now has, and once.
    wanted_days, seen = set(days), set()
    spec = COLLECTIONS.get(collection)
    time_field = spec.day_index[0] if spec and spec.day_index else None

    def current(key: list, document: dict[str, Any] | None) -> bool:
        if document is None or key[1] in seen or document.get(DAY_FIELD) not in wanted_days:
            return False
        if any(document.get(name) != value for name, value in label_filter.items()):
            return False
        # A key left from before the document's time changed is not where it belongs now.
        started = document.get(time_field) if time_field else None
        return not isinstance(started, datetime) or epoch_ms(started) == key[0]

    while len(page) < count:
        # Exactly what is missing: a key whose document has gone costs one more round.
        wanted = list(itertools.islice(ordered, count - len(page)))
        if not wanted:
            break
        ids = [key[1] for key in wanted]
        found = {doc["_id"]: doc for doc in db[collection].find({"_id": {"$in": ids}})}
        for key in wanted:
            document = found.get(key[1])
            if current(key, document):
                seen.add(key[1])
                page.append(document)
    return page[:count]


# How often `forget` reads again a list a write replaced while it was being edited.
_FORGET_ATTEMPTS = 5


def forget(db: Database, ids: Iterable[str]) -> int:
    """Removes `ids` from every key list (an erasure: a list must not keep naming an erased
    conversation, even though a page would skip it). Returns the keys removed.

    Each list is changed only if it is still the one read (same writing run): a write that
    replaced it meanwhile would otherwise have its new keys overwritten by the old ones
    less the erased, and the day's page would hide its new conversations. Such a list is
    read again and edited again."""
    unwanted = set(ids)
    if not unwanted:
        return 0
    removed, query = 0, {}
    for _ in range(_FORGET_ATTEMPTS):
        updates, edited = [], {}
        for found in db[DAY_INDEX_COLLECTION].find(query):
            keep = [key[1] not in unwanted for key in found["keys"]]
            if all(keep):
                continue
            edited[found["_id"]] = keep.count(False)
            # The label values go with their keys, so the two stay aligned.
            change: dict[str, Any] = {"keys": list(itertools.compress(found["keys"], keep))}
            if found.get("labels") is not None:
                change["labels"] = {
                    name: list(itertools.compress(values, keep))
                    for name, values in found["labels"].items()
                }
            still = {"_id": found["_id"], RUN_FIELD: found.get(RUN_FIELD)}
            updates.append(UpdateOne(still, {"$set": change}))
        if not updates:
            break
        db[DAY_INDEX_COLLECTION].bulk_write(updates, ordered=False)
        # The lists a write replaced meanwhile: read again by id.
        unchanged = {
            found["_id"]
            for found in db[DAY_INDEX_COLLECTION].find({"_id": {"$in": list(edited)}})
            if any(key[1] in unwanted for key in found["keys"])
        }
        removed += sum(n for list_id, n in edited.items() if list_id not in unchanged)
        if not unchanged:
            break
        query = {"_id": {"$in": sorted(unchanged)}}
    return removed
