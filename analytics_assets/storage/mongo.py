"""Partition slices in MongoDB: replace the documents of some days, load days back.

Replacing a day is two idempotent steps, so a crash anywhere leaves no duplicates and a
re-run no gaps:
1. write every new document by its deterministic `_id` (insert, or replace the stored one),
   stamped with this run's id;
2. delete the day's documents that this run did not write (they left the source).
Readers never see the day empty, only the old or the new version of each document.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeVar

import polars as pl
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    NetworkTimeout,
    NotPrimaryError,
    OperationFailure,
)

from analytics_assets.storage.collections import DAY_FIELD, RUN_FIELD, CollectionSpec
from analytics_assets.storage.day_index import remove_day_lists, write_day_index
from analytics_assets.storage.validation import document_problems, size_problem, suspect_rows
from analytics_assets.transforms.timestamps import parse_utc_timestamp

TRANSIENT_ERRORS = (AutoReconnect, NotPrimaryError, NetworkTimeout)
DUPLICATE_KEY = 11000
# What a server answers about one document it will not store: a validator's refusal, a
# document or key too large, a value or field name it does not take. Such a document is
# rejected (with its reason), and its older copy goes with the day's stale ones.
DOCUMENT_REFUSALS = frozenset({2, 52, 121, 10334, 17280, 17419, 17420})
# Errors that say nothing about the document: the server was busy or going away (the
# embedded server's SQLite answers 8, "database is locked", while another process writes).
# Retried; still there after the retries, the write fails. Taken for refusals, they were
# rejections, and the day's delete of what the write had not produced emptied the served
# day while the write reported success.
TRANSIENT_CODES = frozenset({6, 7, 8, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})
# Fresh documents per insert_many call; bounds what a transient failure makes us resend.
INSERT_CHUNK = 20_000
T = TypeVar("T")


@dataclass(frozen=True)
class RejectedDocument:
    document_id: str | None
    conversation_id: str | None
    day: str | None
    reason: str


@dataclass
class WriteReport:
    written: int = 0
    deleted: int = 0
    batches: int = 0
    retries: int = 0
    seconds: float = 0.0
    rejected: list[RejectedDocument] = field(default_factory=list)


def _with_retries(
    operation: Callable[[], T], report: WriteReport, *, attempts: int, backoff_s: float
) -> T:
    """Retries transient failures; safe because every write here is idempotent (a document
    an unordered write stored before the failure is a duplicate key on the retry)."""
    for attempt in range(attempts):
        try:
            return operation()
        except (*TRANSIENT_ERRORS, BulkWriteError, OperationFailure) as error:
            if not _transient(error) or attempt + 1 == attempts:
                raise
            report.retries += 1
            time.sleep(random.uniform(0, backoff_s * 2**attempt))
    raise AssertionError("unreachable")


def _transient(error: Exception) -> bool:
    if isinstance(error, TRANSIENT_ERRORS):
        return True
    if isinstance(error, BulkWriteError):
        codes = {e.get("code") for e in error.details.get("writeErrors", [])} - {DUPLICATE_KEY}
        return bool(codes) and codes <= TRANSIENT_CODES
    return getattr(error, "code", None) in TRANSIENT_CODES


def _dates_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    # BSON has datetimes but no dates: every date (the day, first/last seen ...) as ISO text.
    return frame.with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))


def frame_to_documents(frame: pl.DataFrame, spec: CollectionSpec) -> list[dict[str, Any]]:
    """Rows -> documents with a deterministic `_id` and dates as "YYYY-MM-DD"."""
    documents = _dates_as_text(frame).to_dicts()
    for document in documents:
        document["_id"] = spec.document_id(document)
    return documents


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def split_valid(
    documents: Iterable[dict[str, Any]], spec: CollectionSpec
) -> tuple[list[dict[str, Any]], list[RejectedDocument]]:
    valid: list[dict[str, Any]] = []
    rejected: list[RejectedDocument] = []
    for document in documents:
        problems = document_problems(document, spec.json_schema)
        too_big = size_problem(document) if not problems else None
        if problems or too_big:
            rejected.append(
                RejectedDocument(
                    document_id=document.get("_id"),
                    conversation_id=document.get("conversation_id"),
                    day=document.get(DAY_FIELD),
                    reason="; ".join(problems) if problems else str(too_big),
                )
            )
        else:
            valid.append(document)
    return valid, rejected


def _bulk(
    collection: Collection,
    write: Callable[[], Any],
    batch: Sequence[dict[str, Any]],
    report: WriteReport,
    *,
    attempts: int,
    backoff_s: float,
) -> list[dict[str, Any]]:
    """Runs one unordered bulk write; returns the documents that hit a duplicate key."""
    duplicates: list[dict[str, Any]] = []
    try:
        _with_retries(
            write,
            report,
            attempts=attempts,
            backoff_s=backoff_s,
        )
    except BulkWriteError as error:
        duplicates += [
            batch[write_error["index"]]
            for write_error in error.details.get("writeErrors", [])
            if write_error.get("code") == DUPLICATE_KEY
        ]
        _refused(error, batch, report)
    return duplicates


def _refused(
    error: BulkWriteError, batch: Sequence[dict[str, Any]], report: WriteReport
) -> set[int]:
    """Records the documents a bulk write refused (`DOCUMENT_REFUSALS`: a server that
    enforces the validator refuses single documents; the rest land); returns their indices
    in `batch`. Any other error but a duplicate key fails the write: nothing of the day is
    deleted on its account."""
    codes = {write_error.get("code") for write_error in error.details.get("writeErrors", [])}
    if codes - DOCUMENT_REFUSALS - {DUPLICATE_KEY}:
        raise error
    refused = set()
    for write_error in error.details.get("writeErrors", []):
        if write_error.get("code") == DUPLICATE_KEY:
            continue
        document = batch[write_error["index"]]
        report.rejected.append(
            RejectedDocument(
                document["_id"],
                document.get("conversation_id"),
                document.get(DAY_FIELD),
                f"refused by MongoDB: {write_error.get('errmsg')}",
            )
        )
        report.written -= 1
        refused.add(write_error["index"])
    return refused


def _replace_or_insert(
    collection: Collection,
    batch: Sequence[dict[str, Any]],
    report: WriteReport,
    *,
    attempts: int,
    backoff_s: float,
) -> None:
    """Writes documents that may already be stored: whole-document replaces of the ones
    that are, inserts of the rest. Not `$set` upserts: through `$set` the loopback server
    stores a datetime as text and a float to 15 digits, so a day rewritten would come back
    with other types than a day written once (issue 18); replaces and inserts keep BSON
    dates and doubles on both it and a real MongoDB.

    Replaced first, looked up only if some were not there: a day written again mostly holds
    the same documents, and the lookup is the costly part on the embedded server (it reads
    each whole document to project its `_id`; `benchmarks/bench_mongo.py`)."""
    try:
        result = _with_retries(
            lambda: collection.bulk_write(
                [ReplaceOne({"_id": document["_id"]}, document) for document in batch],
                ordered=False,
            ),
            report,
            attempts=attempts,
            backoff_s=backoff_s,
        )
        matched = result.matched_count
    except BulkWriteError as error:
        # A server that enforces the validator refuses single documents here too: they
        # become rejections, as on the insert path, and the rest of the day is written.
        # (Uncaught, the day failed before its stale delete and its key list, on every
        # retry: it never converged.)
        refused = _refused(error, batch, report)
        matched = error.details.get("nMatched", 0)
        batch = [document for index, document in enumerate(batch) if index not in refused]
    if matched == len(batch):
        return
    ids = [document["_id"] for document in batch]
    stored = {
        found["_id"]
        for found in _with_retries(
            lambda: list(collection.find({"_id": {"$in": ids}}, projection={"_id": True})),
            report,
            attempts=attempts,
            backoff_s=backoff_s,
        )
    }
    # A replace that found nothing changed nothing; a document stored since (by the replace
    # of a retried attempt) is a duplicate key below, which is the outcome wanted.
    absent = [document for document in batch if document["_id"] not in stored]
    if absent:
        _bulk(
            collection,
            lambda: collection.insert_many(absent, ordered=False),
            absent,
            report,
            attempts=attempts,
            backoff_s=backoff_s,
        )


def replace_days(
    collection: Collection,
    documents: list[dict[str, Any]],
    days: Sequence[str] | None,
    *,
    spec: CollectionSpec,
    run_id: str,
    batch_size: int = 1000,
    attempts: int = 5,
    backoff_s: float = 0.2,
    prevalidated: bool = False,
) -> WriteReport:
    """Makes the collection's slice for `days` equal `documents` (None: the whole collection).

    `prevalidated`: the caller already checked the documents (see `suspect_rows`).
    """
    started = time.perf_counter()
    report = WriteReport()
    if prevalidated:
        valid = documents
    else:
        valid, report.rejected = split_valid(documents, spec)
    for document in valid:
        document[RUN_FIELD] = run_id
    # A day none of whose documents is stored yet (the usual first write of a day) takes
    # plain inserts, which are cheaper than replaces; a key already stored (under this day
    # or another) then comes back as a duplicate and is replaced like every document of a
    # day being rewritten, so a wrong guess here costs time, never a document.
    empty_days = _days_not_yet_written(collection, valid, days, report, attempts, backoff_s)
    # The days' key lists go first and come back after the documents (storage/day_index.py).
    remove_day_lists(collection.database, spec, days)
    fresh = [document for document in valid if document.get(DAY_FIELD) in empty_days]
    known = [document for document in valid if document.get(DAY_FIELD) not in empty_days]
    report.written = len(valid)
    # insert_many packs its own batches up to the server's message size: fewer round trips.
    for batch in _chunks(fresh, INSERT_CHUNK):
        known += _bulk(
            collection,
            lambda batch=batch: collection.insert_many(batch, ordered=False),
            batch,
            report,
            attempts=attempts,
            backoff_s=backoff_s,
        )
        report.batches += 1
    for batch in _chunks(known, batch_size):
        _replace_or_insert(collection, batch, report, attempts=attempts, backoff_s=backoff_s)
        report.batches += 1
    # What the slice holds that this write did not produce: stamped by another run, and
    # not one of this write's keys. By the stamp alone, a second run writing the same day
    # between this one's writes and its delete (a retry that takes no lease, the mirror's
    # copy from the lake) had stamped the documents as its own, and every one of them was
    # deleted: both runs succeeded and the day was empty. A key refused above is not this
    # write's: its older copy goes.
    refused = {rejected.document_id for rejected in report.rejected}
    produced: dict[str | None, list] = {}
    for document in valid:
        if document["_id"] not in refused:
            key = document.get(DAY_FIELD) if days is not None else None
            produced.setdefault(key, []).append(document["_id"])
    # One delete per day: the loopback server handles `day` equality best, and so do indexes.
    for day in days if days is not None else [None]:
        scope = {**spec.slice_scope} | ({DAY_FIELD: day} if day is not None else {})
        report.deleted += _delete_unproduced(
            collection, scope, run_id, produced.get(day, []), report,
            batch_size=batch_size, attempts=attempts, backoff_s=backoff_s,
        )  # fmt: skip
    # After the documents, so a key never names a document not yet written.
    write_day_index(collection.database, spec, valid, days, run_id)
    report.seconds = time.perf_counter() - started
    return report


def _days_not_yet_written(
    collection: Collection,
    documents: list[dict[str, Any]],
    days: Sequence[str] | None,
    report: WriteReport,
    attempts: int,
    backoff_s: float,
) -> set[str]:
    """The days of `days` for which none of three keys is stored: the first, middle and
    last of the day's documents (as the frame was sorted), so a day a crash cut short, or
    one that gained documents since, is seen as written too.

    By key, not by asking for any document of the day: the embedded server reads a date-like
    value such as a `day` through its date path, which loads every matching document before
    it applies the limit (1.2 s for a day of 100,000 messages, about a sixth of rewriting it;
    `benchmarks/bench_mongo.py`)."""
    if not days:
        return set()
    by_day: dict[str, list] = {day: [] for day in days}
    for document in documents:
        keys = by_day.get(document.get(DAY_FIELD))
        if keys is not None:
            keys.append(document["_id"])
    probes = {
        day: {keys[0], keys[len(keys) // 2], keys[-1]} for day, keys in by_day.items() if keys
    }
    wanted = [key for keys in probes.values() for key in keys]
    if not wanted:  # no `$in: []`: the embedded server filters that in Python
        return set(days)
    stored = {
        found["_id"]
        for found in _with_retries(
            lambda: list(collection.find({"_id": {"$in": wanted}}, projection={"_id": True})),
            report,
            attempts=attempts,
            backoff_s=backoff_s,
        )
    }
    # A day with nothing to write has nothing to insert either way.
    return {day for day in days if not probes.get(day, set()) & stored}


# Keys one `$nin` names at most, and their bytes: a command is at most 16 MB, about 400,000
# keys of 30 characters, far fewer of long ones (a source's ids are not bounded). A slice
# with more lists what it holds and deletes the rest by key instead (slower on the embedded
# server, which reads each whole document to project its `_id`).
MAX_KEYS_IN_A_FILTER = 100_000
MAX_KEY_BYTES_IN_A_FILTER = 8_000_000
# What BSON adds to each key of an array: a type byte, the index as a C string, and (for a
# string) its length and terminating zero.
_BSON_BYTES_PER_KEY = 16


def _fits_a_filter(keys: list) -> bool:
    if len(keys) > MAX_KEYS_IN_A_FILTER:
        return False
    size = sum(len(key.encode()) if isinstance(key, str) else 8 for key in keys)
    return size + _BSON_BYTES_PER_KEY * len(keys) <= MAX_KEY_BYTES_IN_A_FILTER


def _delete_unproduced(
    collection: Collection,
    scope: dict,
    run_id: str,
    produced: list,
    report: WriteReport,
    *,
    batch_size: int,
    attempts: int,
    backoff_s: float,
) -> int:
    """Deletes the documents of `scope` that another run stamped and this write did not
    produce; returns how many."""

    def retried(operation):
        return _with_retries(operation, report, attempts=attempts, backoff_s=backoff_s)

    stale = {**scope, RUN_FIELD: {"$ne": run_id}}
    if not produced:
        # No `$nin: []`: the embedded server cannot make SQL of it and filters the whole
        # collection in Python (1.6 s against 0.1 s on 200,000 documents), for every day a
        # table such as processing_errors has nothing.
        return retried(lambda: collection.delete_many(stale)).deleted_count
    if _fits_a_filter(produced):
        return retried(
            lambda: collection.delete_many({**stale, "_id": {"$nin": produced}})
        ).deleted_count
    keep = set(produced)
    held = retried(lambda: [found["_id"] for found in collection.find(stale, {"_id": True})])
    deleted = 0
    for chunk in _chunks([key for key in held if key not in keep], batch_size):
        deleted += retried(
            lambda chunk=chunk: collection.delete_many({"_id": {"$in": list(chunk)}})
        ).deleted_count
    return deleted


def replace_frame(
    collection: Collection,
    frame: pl.DataFrame,
    days: Sequence[str] | None,
    *,
    spec: CollectionSpec,
    run_id: str,
    **options: Any,
) -> WriteReport:
    """`replace_days` for a frame: the schema is checked vectorized, and only the rows that
    may be bad are checked one by one (to name their field)."""
    # Dates as the documents hold them (text), for the slice's scope as for the check below:
    # checked as a Date column, every row of every day was suspect (`day` is text in the
    # schema) and went through the per-document check.
    frame = _dates_as_text(frame)
    scope = dict(spec.slice_scope)
    for name in spec.slice_by:
        values = frame[name].unique().to_list()
        if len(values) != 1:
            raise ValueError(f"{spec.name}: one {name} per write, got {values}")
        scope[name] = values[0]
    if scope != spec.slice_scope:
        spec = dataclasses.replace(spec, slice_scope=scope)
    suspect = suspect_rows(frame, spec.json_schema).to_list()
    documents = frame_to_documents(frame, spec)
    trusted = [document for document, bad in zip(documents, suspect, strict=True) if not bad]
    checked, rejected = split_valid(
        [document for document, bad in zip(documents, suspect, strict=True) if bad], spec
    )
    report = replace_days(
        collection,
        trusted + checked,
        days,
        spec=spec,
        run_id=run_id,
        prevalidated=True,
        **options,
    )
    report.rejected = rejected + report.rejected
    return report


def refile_documents(
    collection: Collection,
    frame: pl.DataFrame,
    days: Sequence[str],
    *,
    spec: CollectionSpec,
    run_id: str,
    attempts: int = 5,
    backoff_s: float = 0.2,
) -> int:
    """Stores `frame`'s rows (records the lake holds on a day next to `days`,
    `storage/refile.py`) as their documents, each filed under its own day, where the
    document is still filed under one of `days`; returns how many. Never inserts: a document
    an erasure deleted meanwhile, or that another run filed under its own day since, is
    left as it is. Looked up by `_id`, then replaced by `_id`: a filter on the day would
    make the embedded server read the whole day."""
    documents = {document["_id"]: document for document in frame_to_documents(frame, spec)}
    report = WriteReport()
    written = set(days)
    found = _with_retries(
        lambda: list(collection.find({"_id": {"$in": list(documents)}}, {DAY_FIELD: True})),
        report, attempts=attempts, backoff_s=backoff_s,
    )  # fmt: skip
    filed_here = [document["_id"] for document in found if document.get(DAY_FIELD) in written]
    if not filed_here:
        return 0
    operations = [
        ReplaceOne({"_id": key}, {**documents[key], RUN_FIELD: run_id}) for key in filed_here
    ]
    result = _with_retries(
        lambda: collection.bulk_write(operations, ordered=False),
        report, attempts=attempts, backoff_s=backoff_s,
    )  # fmt: skip
    return result.matched_count


def _date_fields(spec: CollectionSpec) -> list[str]:
    def is_date(rule: dict[str, Any]) -> bool:
        kind = rule.get("bsonType")
        return kind == "date" or (isinstance(kind, list) and "date" in kind)

    return [name for name, rule in spec.json_schema["properties"].items() if is_date(rule)]


def load_days(
    collection: Collection, days: Sequence[str] | None, spec: CollectionSpec
) -> pl.DataFrame:
    """The documents of `days` (None: all) as a frame, without Mongo's bookkeeping fields."""
    filters = [{DAY_FIELD: day} for day in days] if days is not None else [{}]
    documents = [
        document
        for query in filters
        for document in collection.find(query, projection={RUN_FIELD: False})
    ]
    if not documents:
        return pl.DataFrame()
    # Written here, a timestamp is a BSON date; documents written by earlier versions through
    # `$set` on the loopback server hold it as text. Both are read back as one type.
    date_fields = [name for name in _date_fields(spec) if name in documents[0]]
    for document in documents:
        for name in date_fields:
            value = document.get(name)
            if isinstance(value, datetime):
                document[name] = value.isoformat()
    frame = pl.DataFrame(documents, infer_schema_length=None).drop("_id")
    if DAY_FIELD in frame.columns:
        frame = frame.with_columns(pl.col(DAY_FIELD).str.to_date("%Y-%m-%d"))
    return frame.with_columns(
        parse_utc_timestamp(pl.col(name).cast(pl.String)) for name in date_fields
    )


def day_keys(partition_keys: Iterable[str]) -> list[str]:
    """Partition keys of daily partitions, validated as days."""
    return [date.fromisoformat(key).isoformat() for key in partition_keys]
