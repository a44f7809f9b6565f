"""MongoDB storage against nx-27017 (MongoDB's wire protocol on loopback, real pymongo)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import polars as pl
import pytest
from dagster import (
    AssetIn,
    BackfillPolicy,
    DagsterInstance,
    TimeWindowPartitionMapping,
    asset,
    materialize,
)
from pymongo import MongoClient, monitoring
from pymongo.errors import AutoReconnect, BulkWriteError

from analytics_assets.defs.partitions import daily_partitions, days_in
from analytics_assets.defs.storage.io_managers import MongoIOManager
from analytics_assets.storage import migrations
from analytics_assets.storage.collections import COLLECTIONS, RUN_FIELD
from analytics_assets.storage.day_index import (
    DAY_INDEX_COLLECTION,
    LABELS_RUN_FIELD,
    MAX_REMEMBERED_FILTERS,
    DayList,
    _ordered_keys,
    forget,
)
from analytics_assets.storage.mongo import (
    frame_to_documents,
    load_days,
    replace_days,
    replace_frame,
)
from analytics_assets.storage.placement import mirror_metadata
from analytics_assets.storage.validation import MAX_BSON_BYTES
from analytics_assets_tests.conftest import range_tags

SPEC = COLLECTIONS["conversation_messages"]


def messages(day: date, count: int, *, version: int = 1, prefix: str = "m") -> pl.DataFrame:
    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return pl.DataFrame(
        {
            "message_id": [f"{prefix}-{day}-{n}" for n in range(count)],
            "conversation_id": [f"c-{day}-{n // 3}" for n in range(count)],
            "role": ["user", "assistant", "system"] * (count // 3) + ["user"] * (count % 3),
            "content": [f"v{version} text {n}" for n in range(count)],
            "model": ["gpt-4o"] * count,
            "created_at": [moment] * count,
            "prompt_tokens": [10] * count,
            "completion_tokens": [5] * count,
            "latency_ms": [100.0] * count,
            "feedback": [None] * count,
            "day": [day] * count,
        }
    )


# Counts per day for the partitioned asset below; tests change them between runs.
ROWS_PER_DAY: dict[date, int] = {}
VERSION = {"value": 1}


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    name="conversation_messages",
    metadata=mirror_metadata("conversation_messages"),
)
def partitioned_messages(context) -> pl.DataFrame:
    frames = [
        messages(day, ROWS_PER_DAY.get(day, 6), version=VERSION["value"])
        for day in days_in(context.partition_time_window)
    ]
    return pl.concat(frames)


@asset(
    partitions_def=daily_partitions,
    ins={
        "conversation_messages": AssetIn(
            partition_mapping=TimeWindowPartitionMapping(start_offset=-2, end_offset=0)
        )
    },
    io_manager_key="mem",
)
def three_days(conversation_messages: pl.DataFrame) -> pl.DataFrame:
    return conversation_messages


def run_range(mongo, first: str, last: str, instance) -> None:
    result = materialize(
        [partitioned_messages],
        resources={"io_manager": MongoIOManager(mongo=mongo, batch_size=4)},
        instance=instance,
        tags=range_tags(first, last),
    )
    assert result.success


def test_write_overwrite_and_load_partitions_and_ranges(mongo):
    from dagster import InMemoryIOManager

    instance = DagsterInstance.ephemeral()
    ROWS_PER_DAY.clear()
    VERSION["value"] = 1
    run_range(mongo, "2026-11-01", "2026-11-03", instance)
    collection = mongo.db()["conversation_messages"]
    assert collection.count_documents({}) == 18

    # Day 2 again, now with fewer rows and new content: exactly that slice is replaced.
    ROWS_PER_DAY[date(2026, 11, 2)] = 4
    VERSION["value"] = 2
    run_range(mongo, "2026-11-02", "2026-11-02", instance)
    assert collection.count_documents({"day": "2026-11-02"}) == 4
    assert collection.count_documents({"day": "2026-11-01"}) == 6
    assert collection.count_documents({"day": "2026-11-03"}) == 6
    assert collection.find_one({"message_id": "m-2026-11-02-0"})["content"] == "v2 text 0"
    assert collection.find_one({"message_id": "m-2026-11-01-0"})["content"] == "v1 text 0"

    # One day, a range (through a partition mapping), and everything.
    one_day = load_days(collection, ["2026-11-02"], SPEC)
    assert one_day.height == 4
    assert one_day.schema["day"] == pl.Date
    assert one_day.schema["created_at"] == pl.Datetime("us", "UTC")
    result = materialize(
        [partitioned_messages, three_days],
        selection=[three_days],
        resources={
            "io_manager": MongoIOManager(mongo=mongo),
            "mem": InMemoryIOManager(),
        },
        instance=instance,
        partition_key="2026-11-03",
    )
    assert result.success
    assert sorted(result.output_for_node("three_days")["message_id"].to_list()) == sorted(
        [f"m-2026-11-01-{n}" for n in range(6)]
        + [f"m-2026-11-02-{n}" for n in range(4)]
        + [f"m-2026-11-03-{n}" for n in range(6)]
    )
    assert load_days(collection, None, SPEC).height == 16


class FlakyCollection:
    """The real collection, with faults injected into bulk writes (fault injection only)."""

    def __init__(self, collection, *, crash_after_batches=None, transient_every=None):
        self.collection = collection
        self.crash_after_batches = crash_after_batches
        self.transient_every = transient_every
        self.calls = 0

    def bulk_write(self, operations, ordered):
        self.calls += 1
        if self.transient_every and self.calls % self.transient_every == 1:
            raise AutoReconnect("injected: connection reset")
        if self.crash_after_batches is not None and self.calls > self.crash_after_batches:
            raise RuntimeError("injected: the process died here")
        return self.collection.bulk_write(operations, ordered=ordered)

    def insert_many(self, documents, ordered):
        self.calls += 1
        if self.crash_after_batches is not None and self.calls > self.crash_after_batches:
            raise RuntimeError("injected: the process died here")
        if self.transient_every and self.calls % self.transient_every == 1:
            # The reset comes after the server stored the first half.
            self.collection.insert_many(documents[: len(documents) // 2], ordered=ordered)
            raise AutoReconnect("injected: connection reset mid-insert")
        return self.collection.insert_many(documents, ordered=ordered)

    def __getattr__(self, name):
        return getattr(self.collection, name)


def test_a_rerun_after_a_crash_half_way_leaves_no_duplicates_and_no_gaps(mongo, monkeypatch):
    from analytics_assets.storage import mongo as mongo_writes

    collection = mongo.db()["conversation_messages"]
    day = date(2026, 11, 5)
    old = frame_to_documents(messages(day, 30, version=1, prefix="old"), SPEC)
    replace_days(collection, old, [day.isoformat()], spec=SPEC, run_id="run-1")
    new = frame_to_documents(messages(day, 40, version=2), SPEC)
    # None of the new keys is stored, so they are inserted: in chunks of 10 here.
    monkeypatch.setattr(mongo_writes, "INSERT_CHUNK", 10)
    with pytest.raises(RuntimeError, match="process died"):
        replace_days(
            # Two chunks of new documents are inserted, then the process dies.
            FlakyCollection(collection, crash_after_batches=2),
            new,
            [day.isoformat()],
            spec=SPEC,
            run_id="run-2",
            batch_size=10,
        )
    # Half-way: the day holds old and some new documents, no duplicates.
    ids = [doc["_id"] for doc in collection.find({"day": day.isoformat()}, {"_id": 1})]
    assert len(ids) == len(set(ids)) == 30 + 20

    report = replace_days(
        FlakyCollection(collection, transient_every=2),
        new,
        [day.isoformat()],
        spec=SPEC,
        run_id="run-3",
        batch_size=10,
    )
    # The day's first key is stored now, so its documents are replaced, in batches of 10.
    # Every first attempt is reset and the second lands: the replaces of each batch of 10,
    # and the inserts of the two batches the crash left out (the first two were all there).
    assert report.retries == 4 + 2
    documents = list(collection.find({"day": day.isoformat()}))
    assert sorted(doc["_id"] for doc in documents) == sorted(doc["_id"] for doc in new)
    assert {doc[RUN_FIELD] for doc in documents} == {"run-3"}
    assert report.deleted == 30


class InterleavedCollection:
    """The real collection; before this writer first looks for or deletes stale documents,
    another run writes the same day in full (a retry that takes no lease, or the mirror's
    copy from the lake)."""

    def __init__(self, collection, other_write):
        self.collection, self.other_write = collection, other_write

    def _interleave(self) -> None:
        if self.other_write is not None:
            write, self.other_write = self.other_write, None
            write()

    def find(self, query=None, *args, **kwargs):
        if query and RUN_FIELD in query:  # the stale documents' lookup, not a write's
            self._interleave()
        return self.collection.find(query, *args, **kwargs)

    def delete_many(self, query):
        self._interleave()
        return self.collection.delete_many(query)

    def __getattr__(self, name):
        return getattr(self.collection, name)


def test_one_message_id_in_two_conversations_on_two_days_is_two_documents(mongo):
    """The lake keys a message by its conversation and id (`newest_copies`); keyed by the id
    alone, the day written last replaced the other day's message in MongoDB, with no
    processing error and no failed check (found by a hostile-records review)."""
    collection = mongo.db()["conversation_messages"]
    first, third = date(2026, 11, 1), date(2026, 11, 3)
    on_first = messages(first, 3).with_columns(pl.lit("shared-1").alias("message_id"))
    on_third = messages(third, 3).with_columns(pl.lit("shared-1").alias("message_id"))
    # One message each day carries the shared id (validation rejects it within one day).
    on_first, on_third = on_first.head(1), on_third.head(1)
    for day, frame in ((first, on_first), (third, on_third), (first, on_first)):
        replace_frame(collection, frame, [day.isoformat()], spec=SPEC, run_id=f"run-{day}")
    stored = sorted(
        (doc["conversation_id"], doc["day"]) for doc in collection.find({"message_id": "shared-1"})
    )
    assert stored == [(f"c-{first}-0", first.isoformat()), (f"c-{third}-0", third.isoformat())]


def test_a_day_written_under_the_old_message_ids_is_converted_by_its_next_write(mongo):
    """Documents stored before messages were keyed by conversation too: the day's next
    write stores the new ones and deletes the old, neither lost nor doubled."""
    collection = mongo.db()["conversation_messages"]
    day = date(2026, 11, 2)
    frame = messages(day, 6)
    old_spec = dataclasses.replace(SPEC, id_fields=("message_id",))
    replace_frame(collection, frame, [day.isoformat()], spec=old_spec, run_id="before")
    assert sorted(doc["_id"] for doc in collection.find({})) == sorted(frame["message_id"])
    report = replace_frame(collection, frame, [day.isoformat()], spec=SPEC, run_id="after")
    stored = sorted(doc["_id"] for doc in collection.find({}))
    assert stored == sorted(
        f"{m}:{c}" for m, c in zip(frame["message_id"], frame["conversation_id"], strict=True)
    )
    assert report.deleted == 6


class FindListener(monitoring.CommandListener):
    """The filters of the `find` commands a client sends."""

    def __init__(self):
        self.filters: list[dict] = []

    def started(self, event):
        if event.command_name == "find":
            self.filters.append(dict(event.command.get("filter", {})))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_whether_a_day_was_written_is_asked_by_key_not_by_reading_the_day(mongo):
    """The embedded server reads a date-like value such as a `day` through its date path,
    which loads every matching document before the limit: asking it for one document of the
    day cost 1.2 s a rewrite of 100,000 messages (bench_mongo.py). Three keys a day are
    asked instead, and a wrong guess costs time only (a duplicate is replaced)."""
    from analytics_assets.storage.mongo import WriteReport, _days_not_yet_written

    listener = FindListener()
    client = MongoClient(mongo.uri, event_listeners=[listener])
    collection = client[mongo.database]["conversation_messages"]
    rewritten, cut_short, other_keys, nothing = (date(2026, 11, d) for d in (1, 2, 3, 4))
    replace_days(collection, frame_to_documents(messages(rewritten, 9), SPEC),
                 [rewritten.isoformat()], spec=SPEC, run_id="run-1")  # fmt: skip
    # A crash left only the middle one of the day's documents.
    middle = frame_to_documents(messages(cut_short, 9), SPEC)[4]
    collection.insert_one({**middle, RUN_FIELD: "run-1"})
    replace_days(collection, frame_to_documents(messages(other_keys, 9, prefix="old"), SPEC),
                 [other_keys.isoformat()], spec=SPEC, run_id="run-1")  # fmt: skip
    listener.filters.clear()

    documents = frame_to_documents(
        pl.concat([messages(day, 9, version=2) for day in (rewritten, cut_short, other_keys)]),
        SPEC,
    )
    days = [day.isoformat() for day in (rewritten, cut_short, other_keys, nothing)]
    found = _days_not_yet_written(collection, documents, days, WriteReport(), 1, 0.0)
    assert found == {other_keys.isoformat(), nothing.isoformat()}
    (probe,) = listener.filters
    assert set(probe) == {"_id"} and len(probe["_id"]["$in"]) == 9

    listener.filters.clear()
    replace_days(collection, documents, days, spec=SPEC, run_id="run-2")
    assert not [query for query in listener.filters if "day" in query]
    stored = sorted(doc["_id"] for doc in collection.find({}, {"_id": 1}))
    assert stored == sorted(doc["_id"] for doc in documents)
    client.close()


@pytest.mark.parametrize("keys_in_a_filter", [100_000, 5])
def test_two_runs_writing_one_day_at_once_leave_it_whole(mongo, monkeypatch, keys_in_a_filter):
    """Each deleted what it had not stamped: the second run's stamps on the same documents
    made the first delete all of them, and both runs succeeded with the day empty. With
    more keys than a filter holds, the stale ones are listed and deleted by key."""
    from analytics_assets.storage import mongo as mongo_writes

    monkeypatch.setattr(mongo_writes, "MAX_KEYS_IN_A_FILTER", keys_in_a_filter)
    collection = mongo.db()["conversation_messages"]
    day = date(2026, 11, 9)
    replace_days(collection, frame_to_documents(messages(day, 12, prefix="old"), SPEC),
                 [day.isoformat()], spec=SPEC, run_id="run-0")  # fmt: skip
    current = messages(day, 30, version=2)

    def retry_of_the_same_day():
        replace_days(collection, frame_to_documents(current, SPEC), [day.isoformat()],
                     spec=SPEC, run_id="run-2")  # fmt: skip

    replace_days(
        InterleavedCollection(collection, retry_of_the_same_day),
        frame_to_documents(current, SPEC), [day.isoformat()], spec=SPEC, run_id="run-1",
    )  # fmt: skip
    stored = sorted(doc["_id"] for doc in collection.find({"day": day.isoformat()}, {"_id": 1}))
    assert stored == sorted(doc["_id"] for doc in frame_to_documents(current, SPEC))


def test_a_filter_names_at_most_its_bytes_of_keys():
    """100,000 keys fit one `$nin` only if they are short: 40,000 ids of 500 characters made
    a filter of 20 MB, over a command's 16 MB (the day's write failed on every retry)."""
    from analytics_assets.storage.mongo import _fits_a_filter

    assert _fits_a_filter([f"m-{n:06d}" for n in range(100_000)])
    assert not _fits_a_filter(["m" * 500 + str(n) for n in range(40_000)])
    assert not _fits_a_filter(["m"] * 100_001)


def test_a_reset_mid_insert_into_an_empty_day_lands_every_document_once(mongo):
    collection = mongo.db()["conversation_messages"]
    day = date(2026, 11, 8)
    documents = frame_to_documents(messages(day, 50), SPEC)
    report = replace_days(
        FlakyCollection(collection, transient_every=2),
        documents,
        [day.isoformat()],
        spec=SPEC,
        run_id="run-1",
    )
    # The insert was retried; its first half came back as duplicates and was upserted,
    # and that upsert met (and retried) the next injected reset.
    assert report.retries == 2
    stored = list(collection.find({"day": day.isoformat()}))
    assert sorted(doc["_id"] for doc in stored) == sorted(doc["_id"] for doc in documents)
    assert {doc[RUN_FIELD] for doc in stored} == {"run-1"}


def test_bad_documents_are_rejected_by_field_and_the_rest_lands(mongo):
    day = date(2026, 11, 6)
    frame = messages(day, 6).with_columns(
        pl.when(pl.col("message_id").str.ends_with("-1"))
        .then(pl.lit("robot"))
        .otherwise(pl.col("role"))
        .alias("role"),
        pl.when(pl.col("message_id").str.ends_with("-2"))
        .then(pl.lit(-4))
        .otherwise(pl.col("prompt_tokens"))
        .alias("prompt_tokens"),
    )
    documents = frame_to_documents(frame, SPEC)
    documents[3].pop("conversation_id")
    documents[4]["created_at"] = "yesterday"
    documents[5]["content"] = "x" * (MAX_BSON_BYTES + 10)
    SPEC_NO_LIMIT = SPEC.json_schema["properties"]["content"].get("maxLength")
    assert SPEC_NO_LIMIT  # the schema caps content well below the BSON limit
    report = replace_days(
        mongo.db()["conversation_messages"], documents, [day.isoformat()], spec=SPEC, run_id="r"
    )
    # A message's document id is its id and its conversation's.
    reasons = {item.document_id.split(":")[0]: item.reason for item in report.rejected}
    assert report.written == 1
    assert "field 'role': 'robot' is not one of" in reasons["m-2026-11-06-1"]
    assert "field 'prompt_tokens': -4 is below the minimum 0" in reasons["m-2026-11-06-2"]
    assert "field 'conversation_id': required but missing" in reasons["m-2026-11-06-3"]
    assert "field 'created_at': expected date, got str" in reasons["m-2026-11-06-4"]
    assert "field 'content': length" in reasons["m-2026-11-06-5"]
    assert mongo.db()["conversation_messages"].count_documents({"day": day.isoformat()}) == 1


def test_only_the_rows_that_may_be_bad_are_checked_one_by_one(mongo, monkeypatch):
    """A frame's dates are checked as the text the documents hold: checked as a Date column,
    `day` broke the schema's pattern on every row, and every document of every day went
    through the per-document check (1.5 s of a 15 s write of 100,000)."""
    from analytics_assets.storage import mongo as mongo_module

    checked = []
    problems_of = mongo_module.document_problems

    def counting(document, schema):
        checked.append(document["_id"])
        return problems_of(document, schema)

    monkeypatch.setattr(mongo_module, "document_problems", counting)
    day = date(2026, 11, 7)
    frame = messages(day, 6).with_columns(
        pl.when(pl.col("message_id").str.ends_with("-1"))
        .then(pl.lit("robot"))
        .otherwise(pl.col("role"))
        .alias("role")
    )
    assert frame.schema["day"] == pl.Date
    report = replace_frame(
        mongo.db()["conversation_messages"], frame, [day.isoformat()], spec=SPEC, run_id="r"
    )
    assert checked == ["m-2026-11-07-1:c-2026-11-07-0"]
    assert [item.document_id for item in report.rejected] == ["m-2026-11-07-1:c-2026-11-07-0"]
    assert mongo.db()["conversation_messages"].count_documents({"day": day.isoformat()}) == 5
    # A slice by a date column is scoped by its text, as the documents hold it (a date
    # object in the scope could not be sent to the server).
    by_day = dataclasses.replace(SPEC, slice_by=("day",))
    report = replace_frame(
        mongo.db()["conversation_messages"], frame, [day.isoformat()], spec=by_day, run_id="r2"
    )
    assert report.written == 5


class ValidatingCollection:
    """The real collection behind a validator that refuses documents whose content says so,
    as a real MongoDB enforcing `$jsonSchema` does (the embedded server does not enforce
    it): fault injection only."""

    def __init__(self, collection):
        self.collection = collection

    def bulk_write(self, operations, ordered):
        refused = [i for i, op in enumerate(operations) if op._doc.get("content") == "refuse"]
        kept = [op for i, op in enumerate(operations) if i not in refused]
        result = self.collection.bulk_write(kept, ordered=ordered) if kept else None
        if not refused:
            return result
        raise BulkWriteError({
            "writeErrors": [{"index": i, "code": 121, "errmsg": "Document failed validation"}
                            for i in refused],
            "nMatched": result.matched_count if result else 0,
        })  # fmt: skip

    def __getattr__(self, name):
        return getattr(self.collection, name)


def test_a_document_refused_while_a_day_is_rewritten_does_not_fail_the_day(mongo):
    """The rewrite path let the server's refusal escape: the day failed before its stale
    delete and its key list, on every retry, so it never converged."""
    collection = mongo.db()["conversation_messages"]
    day = date(2026, 11, 9)
    first = frame_to_documents(messages(day, 5), SPEC)
    replace_days(collection, first, [day.isoformat()], spec=SPEC, run_id="run-1")
    again = frame_to_documents(messages(day, 4, version=2), SPEC)
    again[1]["content"] = "refuse"
    report = replace_days(
        ValidatingCollection(collection), again, [day.isoformat()], spec=SPEC, run_id="run-2"
    )
    assert [item.document_id for item in report.rejected] == [again[1]["_id"]]
    assert "refused by MongoDB: Document failed validation" in report.rejected[0].reason
    assert report.written == 3
    stored = {doc["_id"]: doc for doc in collection.find({"day": day.isoformat()})}
    # The rest of the day is the new version; the record gone from the source is gone.
    assert sorted(stored) == sorted(d["_id"] for i, d in enumerate(again) if i != 1)
    assert {doc[RUN_FIELD] for doc in stored.values()} == {"run-2"}


class LockedCollection:
    """The real collection behind a server that answers "database is locked" (code 8, as the
    embedded server's SQLite does while another process writes) to the next `locked` bulk
    writes: fault injection only."""

    def __init__(self, collection, locked: int):
        self.collection, self.locked = collection, locked

    def bulk_write(self, operations, ordered):
        if self.locked:
            self.locked -= 1
            raise BulkWriteError({
                "writeErrors": [{"index": i, "code": 8, "errmsg": "database is locked"}
                                for i in range(len(operations))],
                "nMatched": 0,
            })  # fmt: skip
        return self.collection.bulk_write(operations, ordered=ordered)

    def __getattr__(self, name):
        return getattr(self.collection, name)


def test_a_locked_database_is_retried_and_never_empties_the_served_day(mongo):
    """ "database is locked" was taken for the server refusing each document: the documents
    became rejections, the day's delete of what the write had not produced removed their
    served copies, and the write reported success with the day empty."""
    collection = mongo.db()["conversation_messages"]
    day = date(2026, 11, 10)
    first = frame_to_documents(messages(day, 3), SPEC)
    replace_days(collection, first, [day.isoformat()], spec=SPEC, run_id="run-1")
    again = frame_to_documents(messages(day, 3, version=2), SPEC)
    # Locked for good: the write fails, and the day keeps what it held.
    with pytest.raises(BulkWriteError):
        replace_days(LockedCollection(collection, locked=99), again, [day.isoformat()],
                     spec=SPEC, run_id="run-2", backoff_s=0)  # fmt: skip
    assert collection.count_documents({"day": day.isoformat()}) == 3
    # Locked for a moment: retried, and the day is the new version.
    report = replace_days(LockedCollection(collection, locked=2), again, [day.isoformat()],
                          spec=SPEC, run_id="run-3", backoff_s=0)  # fmt: skip
    assert (report.rejected, report.written, report.retries) == ([], 3, 2)
    stored = list(collection.find({"day": day.isoformat()}))
    assert len(stored) == 3 and {doc[RUN_FIELD] for doc in stored} == {"run-3"}


def test_oversized_documents_are_caught_before_the_server(mongo):
    from analytics_assets.storage.validation import size_problem

    document = {"_id": "big", "blob": "x" * (MAX_BSON_BYTES + 1)}
    assert "over MongoDB's" in size_problem(document)
    assert size_problem({"_id": "small"}) is None


def test_store_rejections_become_processing_errors(mongo):
    @asset(
        partitions_def=daily_partitions,
        name="conversation_messages",
        metadata=mirror_metadata("conversation_messages"),
    )
    def with_a_bad_row() -> pl.DataFrame:
        frame = messages(date(2026, 11, 7), 3)
        return frame.with_columns(pl.lit("robot").alias("role"))

    result = materialize(
        [with_a_bad_row],
        resources={"io_manager": MongoIOManager(mongo=mongo)},
        partition_key="2026-11-07",
    )
    assert result.success
    metadata = result.asset_materializations_for_node("conversation_messages")[0].metadata
    assert metadata["mongo_documents_rejected"].value == 3
    errors = list(mongo.db()["processing_errors"].find({"stage": "store"}))
    assert len(errors) == 3
    assert {error["table"] for error in errors} == {"conversation_messages"}
    assert all("field 'role'" in error["reason"] for error in errors)
    assert {error["conversation_id"] for error in errors} == {"c-2026-11-07-0"}

    # Fixed and written again: the day's refusals go with it (they stayed, and MongoDB's
    # error count drifted from the lake's).
    @asset(
        partitions_def=daily_partitions,
        name="conversation_messages",
        metadata=mirror_metadata("conversation_messages"),
    )
    def fixed() -> pl.DataFrame:
        return messages(date(2026, 11, 7), 3)

    assert materialize(
        [fixed], resources={"io_manager": MongoIOManager(mongo=mongo)}, partition_key="2026-11-07"
    ).success
    assert list(mongo.db()["processing_errors"].find({"stage": "store"})) == []
    assert mongo.db()["conversation_messages"].count_documents({"day": "2026-11-07"}) == 3


def test_a_write_clears_only_the_refusals_of_the_documents_it_stored(mongo):
    """A collection split in slices (reports by kind, errors by stage): writing one slice
    removed every refusal of the table's day, the other slices' too."""
    from analytics_assets.defs.storage.io_managers import record_store_rejections
    from analytics_assets.storage.mongo import RejectedDocument

    db, day = mongo.db(), date(2026, 11, 7)
    frame = messages(day, 3)
    ids = [SPEC.document_id(d) for d in frame_to_documents(frame, SPEC)]
    other_slice = RejectedDocument("weekly:2026-11-02", None, day.isoformat(), "refused")
    record_store_rejections(db, SPEC, [day.isoformat()], [
        RejectedDocument(ids[0], "c", day.isoformat(), "refused"), other_slice], frame)  # fmt: skip
    assert db["processing_errors"].count_documents({"stage": "store"}) == 2
    # The same slice written again, its first document stored this time, its second refused.
    record_store_rejections(db, SPEC, [day.isoformat()], [
        RejectedDocument(ids[1], "c", day.isoformat(), "refused")], frame)  # fmt: skip
    left = sorted(d["record_key"] for d in db["processing_errors"].find({"stage": "store"}))
    assert left == sorted([ids[1], "weekly:2026-11-02"])


def test_migrations_apply_reapply_and_upgrade(mongo_server):
    from pymongo import MongoClient

    client = MongoClient(mongo_server, tz_aware=True)
    empty = client["migrations_empty"]
    assert migrations.migrate(empty) == [1, 2, 3, 4, 5, 6, 7]
    assert migrations.current_version(empty) == migrations.LATEST_VERSION
    assert set(COLLECTIONS) <= set(empty.list_collection_names())
    # Compared by fields: nx-27017 names indexes its own way and ignores directions.
    indexed = {
        tuple(field for field, _ in info["key"])
        for info in empty["conversation_analytics"].index_information().values()
    }
    assert {("day",), ("user_id", "started_at"), ("model", "day")} <= indexed
    assert migrations.migrate(empty) == []
    assert all(line.startswith("applied") for line in migrations.status_lines(empty))

    older = client["migrations_older"]
    assert migrations.migrate(older, target=1) == [1]
    older["processing_errors"].insert_one(
        {
            "_id": "legacy",
            "day": "2026-11-01",
            "table": "messages",
            "stage": "validate",
            "key": "m-1",
            "reason": "missing role",
        }
    )
    assert [line.split()[0] for line in migrations.status_lines(older)] == [
        "applied",
        "pending",
        "pending",
        "pending",
        "pending",
        "pending",
        "pending",
    ]
    assert migrations.migrate(older) == [2, 3, 4, 5, 6, 7]
    assert {"conversation_translations", "user_return_predictions"} <= set(
        older.list_collection_names()
    )
    legacy = older["processing_errors"].find_one({"_id": "legacy"})
    assert legacy["record_key"] == "m-1" and "key" not in legacy


def test_the_former_keys_are_stored_again_under_the_new_ones(mongo_server):
    """Migration 6: a message stored under its id alone (before 2026-12-07) is stored under
    its id and conversation, so the next write replaces it instead of adding a copy; a message
    re-delivered on two days was one document on the day written last, and rewriting the
    other day showed it twice until that day was rewritten too (found by a review). A key
    of several fields with a `:` in a value is escaped; its refusal names the new key."""
    from pymongo import MongoClient

    db = MongoClient(mongo_server, tz_aware=True)["migrations_rekey"]
    assert migrations.migrate(db, target=5) == [1, 2, 3, 4, 5]
    first, second = date(2026, 11, 1), date(2026, 11, 2)
    former = dataclasses.replace(SPEC, id_fields=("message_id",))
    # The same three messages on both days: stored last, day two holds them.
    for day in (first, second):
        frame = messages(first, 3).with_columns(pl.lit(day).alias("day"))
        replace_frame(db[SPEC.name], frame, [day.isoformat()], spec=former, run_id=f"r-{day}")
    translations = COLLECTIONS["conversation_translations"]
    colon = {
        "message_id": "a:b",
        "target_language": "en",
        "translator": "t",
        "translator_version": "1",
        "text": "x",
        "conversation_id": "c",
        "day": "2026-11-01",
    }
    db[translations.name].insert_one({"_id": "a:b:en:t:1", **colon})  # the unescaped join
    errors = COLLECTIONS["processing_errors"]
    refusal = {
        "table": SPEC.name,
        "stage": "store",
        "record_key": "m-2026-11-01-0",
        "conversation_id": "c-2026-11-01-0",
        "day": "2026-11-01",
        "reason": "refused",
    }
    db[errors.name].insert_one({"_id": errors.document_id(refusal), **refusal})  # fmt: skip
    # A translation's refusal named its former key; one whose message id held a `:` cannot
    # be split back into its fields, and stays.
    for record_key in ("m-1:en:t:1", "a:b:en:t:1"):
        translation_refusal = {**refusal, "table": translations.name, "record_key": record_key,
                               "conversation_id": "c"}  # fmt: skip
        db[errors.name].insert_one(
            {"_id": errors.document_id(translation_refusal), **translation_refusal}
        )

    assert migrations.migrate(db) == [6, 7]
    keys = sorted(doc["_id"] for doc in db[SPEC.name].find({}))
    assert keys == [f"m-2026-11-01-{n}:c-2026-11-01-0" for n in range(3)]
    assert {doc["day"] for doc in db[SPEC.name].find({})} == {second.isoformat()}
    assert [doc["_id"] for doc in db[translations.name].find({})] == ["a\\:b:c:en:t:1"]
    moved = {
        doc["table"]: doc for doc in db[errors.name].find({"record_key": {"$ne": "a:b:en:t:1"}})
    }
    assert moved[SPEC.name]["record_key"] == "m-2026-11-01-0:c-2026-11-01-0"
    assert moved[translations.name]["record_key"] == "m-1:c:en:t:1"
    assert all(doc["_id"] == errors.document_id(doc) for doc in moved.values())
    assert db[errors.name].count_documents({}) == 3
    # Day one written again: its messages move back to it, none twice.
    replace_frame(db[SPEC.name], messages(first, 3), [first.isoformat()], spec=SPEC, run_id="r")
    assert db[SPEC.name].count_documents({}) == 3
    assert {doc["day"] for doc in db[SPEC.name].find({})} == {first.isoformat()}
    # Run again (as after a crash), it finds nothing to move.
    assert migrations._key_by_every_id_field(db, "error") is None
    assert db[SPEC.name].count_documents({}) == 3


def test_one_message_id_in_two_conversations_keeps_both_translations(mongo):
    """A source numbering messages per conversation: message 1 of two conversations, on two
    days, each translated. Keyed by the message id, target and translator, the second day's
    write took the first day's document over, and the first day had no translation in
    MongoDB (the lake kept both)."""
    collection = mongo.db()["conversation_translations"]
    spec = COLLECTIONS["conversation_translations"]
    for day, conversation in ((date(2026, 11, 1), "c-1"), (date(2026, 11, 2), "c-2")):
        frame = pl.DataFrame(
            {
                "message_id": ["1"],
                "conversation_id": [conversation],
                "source_language": ["es"],
                "target_language": ["en"],
                "text": [f"the opening of {conversation}"],
                "translator": ["t"],
                "translator_version": ["1"],
                "is_current": [True],
                "day": [day],
            }
        )
        report = replace_frame(collection, frame, [day.isoformat()], spec=spec, run_id="r")
        assert report.written == 1 and not report.rejected
    stored = {doc["conversation_id"]: (doc["day"], doc["text"]) for doc in collection.find({})}
    assert stored == {
        "c-1": ("2026-11-01", "the opening of c-1"),
        "c-2": ("2026-11-02", "the opening of c-2"),
    }


def test_a_colon_inside_an_id_makes_no_two_messages_one_document(mongo):
    """Joined by `:` as they were, message `a:b` of conversation `c` and message `a` of
    conversation `b:c` were both `a:b:c`: one document for two messages (found by a
    review)."""
    collection = mongo.db()["conversation_messages"]
    day = date(2026, 11, 3)
    frame = messages(day, 2).with_columns(
        pl.Series("message_id", ["a:b", "a"]), pl.Series("conversation_id", ["c", "b:c"])
    )
    report = replace_frame(collection, frame, [day.isoformat()], spec=SPEC, run_id="r")
    assert report.written == 2 and not report.rejected
    stored = sorted((doc["message_id"], doc["conversation_id"]) for doc in collection.find({}))
    assert stored == [("a", "b:c"), ("a:b", "c")]


def test_no_document_id_starts_with_the_day():
    # nx-27017 reads a string `_id` that starts with a date as a date, and then cannot
    # update that document: the day never leads an id.
    for spec in COLLECTIONS.values():
        assert spec.id_fields[0] != "day", spec.name


def test_rewriting_the_errors_of_a_day_keeps_what_a_collection_refused(mongo):
    errors = COLLECTIONS["processing_errors"]
    collection = mongo.db()["processing_errors"]
    refused = {
        "table": "conversation_messages",
        "stage": "store",
        "record_key": "m-1",
        "conversation_id": "c-1",
        "reason": "field 'role': 'robot' is not one of",
        "day": "2026-11-09",
    }
    collection.insert_one({"_id": errors.document_id(refused), **refused})
    validated = pl.DataFrame(
        {
            "day": [date(2026, 11, 9)],
            "table": ["messages"],
            "stage": ["validate"],
            "record_key": ["7"],
            "conversation_id": ["c-2"],
            "reason": ["missing role"],
        }
    )
    for run in ("run-1", "run-2"):
        replace_frame(collection, validated, ["2026-11-09"], spec=errors, run_id=run)
    assert sorted(doc["stage"] for doc in collection.find({"day": "2026-11-09"})) == [
        "store",
        "validate",
    ]


def test_one_representation_per_type_whichever_path_wrote_it(mongo):
    """A timestamp is a BSON date and a float keeps every digit whether the document was
    inserted into an empty day, replaced in a rewritten day, or moved in from another day
    (a duplicate key on insert). Through `$set` the loopback server kept neither (issue 18)."""
    collection = mongo.db()["conversation_messages"]
    first, second = date(2026, 11, 20), date(2026, 11, 21)
    precise = 123.45678901234567

    def written(day: date, prefix: str = "m") -> pl.DataFrame:
        return messages(day, 6, prefix=prefix).with_columns(pl.lit(precise).alias("latency_ms"))

    def check(run_id: str) -> None:
        stored = list(collection.find({RUN_FIELD: run_id}))
        assert len(stored) == 6
        assert all(isinstance(doc["created_at"], datetime) for doc in stored)
        assert all(doc["latency_ms"] == precise for doc in stored)

    replace_frame(collection, written(first), [first.isoformat()], spec=SPEC, run_id="insert")
    check("insert")
    replace_frame(collection, written(first), [first.isoformat()], spec=SPEC, run_id="replace")
    check("replace")
    # The same ids filed under another day: inserted there as duplicates, then replaced.
    moved = written(second).with_columns(
        pl.col("message_id").str.replace("2026-11-21", "2026-11-20")
    )
    replace_frame(collection, moved, [second.isoformat()], spec=SPEC, run_id="moved")
    check("moved")
    loaded = load_days(collection, [second.isoformat()], SPEC)
    assert loaded.schema["created_at"] == pl.Datetime("us", "UTC")


def _conversations(day: date, topics: list[str], *, prefix: str = "c") -> list[dict]:
    """conversation_analytics documents of `day`, one per topic, a minute apart."""
    return [
        {
            "_id": f"{prefix}-{day}-{n}",
            "conversation_id": f"{prefix}-{day}-{n}",
            "user_id": f"u-{n}",
            "started_at": datetime(day.year, day.month, day.day, 9, n),
            "turns": 1,
            "message_count": 2,
            "prompt_tokens": 1,
            "completion_tokens": 1,
            "total_tokens": 2,
            "topic": topic,
            "intent": "question",
            "day": day.isoformat(),
        }
        for n, topic in enumerate(topics)
    ]


def test_a_day_list_keeps_each_keys_labels_and_a_failed_rewrite_leaves_no_list(mongo):
    """The day index of conversation_analytics (storage/day_index.py) keeps each key's label
    values in the keys' order; a rewrite removes the day's list before it writes documents,
    so one that dies half-way leaves the day to the query instead of a list that disagrees
    with the documents; an erasure keeps keys and labels aligned."""
    db, spec = mongo.db(), COLLECTIONS["conversation_analytics"]
    collection, day = db[spec.name], date(2026, 11, 5)
    list_id = f"{spec.name}:{day}"
    replace_days(collection, _conversations(day, ["billing", "bug", "billing"]),
                 [day.isoformat()], spec=spec, run_id="run-1")  # fmt: skip
    listed = DayList.of_document(db[DAY_INDEX_COLLECTION].find_one({"_id": list_id}))
    ids = [f"c-{day}-{n}" for n in range(3)]
    assert [key[1] for key in listed.keys] == ids
    assert listed.labels["topic"] == ["billing", "bug", "billing"]
    assert [key[1] for key in listed.matching({"topic": "billing"})] == [ids[0], ids[2]]
    assert listed.matching({"topic": "billing", "intent": "complaint"}) == []
    assert DayList(keys=listed.keys).matching({"topic": "billing"}) is None  # an older list

    relabeled = _conversations(day, ["bug", "billing", "bug"])
    with pytest.raises(RuntimeError, match="process died"):
        replace_days(FlakyCollection(collection, crash_after_batches=0), relabeled,
                     [day.isoformat()], spec=spec, run_id="run-2")  # fmt: skip
    assert db[DAY_INDEX_COLLECTION].find_one({"_id": list_id}) is None
    replace_days(collection, relabeled, [day.isoformat()], spec=spec, run_id="run-3")
    listed = DayList.of_document(db[DAY_INDEX_COLLECTION].find_one({"_id": list_id}))
    assert [key[1] for key in listed.matching({"topic": "billing"})] == [ids[1]]

    assert forget(db, [ids[0]]) == 1
    listed = DayList.of_document(db[DAY_INDEX_COLLECTION].find_one({"_id": list_id}))
    assert [key[1] for key in listed.keys] == ids[1:]
    assert listed.labels["topic"] == ["billing", "bug"]


def test_an_erasure_during_a_write_keeps_the_lists_new_keys(mongo):
    """`forget` set a list to the keys it had read, less the erased: a write that replaced
    the list in between lost its new keys, and the day's page hid its new conversations."""
    db, spec = mongo.db(), COLLECTIONS["conversation_analytics"]
    day = date(2026, 11, 6)
    list_id = f"{spec.name}:{day}"
    replace_days(db[spec.name], _conversations(day, ["billing", "bug"]), [day.isoformat()],
                 spec=spec, run_id="run-1")  # fmt: skip
    erased, kept = f"c-{day}-0", f"c-{day}-1"

    class WriteInBetween:
        """The day-index collection, with a write of the day landing just before the
        erasure's update (fault injection only)."""

        def __init__(self, collection):
            self.collection = collection
            self.raced = False

        def bulk_write(self, operations, ordered):
            if not self.raced:
                self.raced = True
                replace_days(db[spec.name], _conversations(day, ["billing", "bug", "bug"]),
                             [day.isoformat()], spec=spec, run_id="run-2")  # fmt: skip
            return self.collection.bulk_write(operations, ordered=ordered)

        def __getattr__(self, name):
            return getattr(self.collection, name)

    class Database:
        def __init__(self):
            self.index = WriteInBetween(db[DAY_INDEX_COLLECTION])

        def __getitem__(self, name):
            return self.index if name == DAY_INDEX_COLLECTION else db[name]

    racing = Database()
    assert forget(racing, [erased]) == 1
    assert racing.index.raced
    listed = DayList.of_document(db[DAY_INDEX_COLLECTION].find_one({"_id": list_id}))
    # The second write's keys, the erased one removed again: its third conversation stays.
    assert [key[1] for key in listed.keys] == [kept, f"c-{day}-2"]
    assert listed.labels["topic"] == ["bug", "bug"]


def test_day_lists_merge_days_in_key_order_from_a_cursor_and_trust_only_their_own_labels():
    """Pure: keys of several days merged in (time, id) order, ties across days broken by id
    as the query's sort does, the cursor excluded; labels count only when written with the
    keys (same run) and aligned with them; a list remembers a bounded number of filters."""
    monday = DayList(keys=[[1, "b"], [2, "a"], [3, "c"]], labels={"topic": ["x", "y", "x"]})
    tuesday = DayList(keys=[[1, "a"], [2, "b"], [4, "d"]], labels={"topic": ["x", "x", "y"]})
    everything = list(_ordered_keys([monday, tuesday], {}, None))
    assert everything == [[1, "a"], [1, "b"], [2, "a"], [2, "b"], [3, "c"], [4, "d"]]
    cursor = (datetime.fromtimestamp(0.002, UTC), "a")  # [2, "a"]
    assert list(_ordered_keys([monday, tuesday], {"topic": "x"}, cursor)) == [[2, "b"], [3, "c"]]
    assert _ordered_keys([monday, DayList(keys=tuesday.keys)], {"topic": "x"}, None) is None

    stored = {"keys": [[1, "a"], [2, "b"]], "labels": {"topic": ["x", "y"]},
              RUN_FIELD: "run-2", LABELS_RUN_FIELD: "run-2"}  # fmt: skip
    assert DayList.of_document(stored).labels == {"topic": ["x", "y"]}
    assert DayList.of_document({**stored, RUN_FIELD: "run-3"}).labels is None
    assert DayList.of_document({**stored, "keys": [[1, "a"]]}).labels is None

    for value in range(MAX_REMEMBERED_FILTERS + 5):
        assert monday.matching({"topic": f"v{value}"}) == []
    assert len(monday._matching) <= MAX_REMEMBERED_FILTERS
    assert monday.matching({"topic": "x"}) == [[1, "b"], [3, "c"]]


def test_a_message_whose_copy_leaves_the_next_day_stays_in_mongodb(mongo, tmp_path):
    """A message NocoDB held again after midnight is one document, filed under the day
    written last (the next day's copy). Once the source dropped that copy and the next day
    was rebuilt, its stale delete removed the document, while the lake's first day still
    held the message (found by a review). The rebuild now files it under the first day."""
    from analytics_assets.defs.storage.io_managers import LakeAndMongoIOManager

    first, second = date(2026, 11, 1), date(2026, 11, 2)
    day_one = messages(first, 3)
    held = {first: day_one, second: day_one.head(1).with_columns(pl.lit(second).alias("day"))}

    @asset(
        partitions_def=daily_partitions,
        name="conversation_messages",
        metadata=mirror_metadata("conversation_messages"),
    )
    def conversation_messages(context) -> pl.DataFrame:
        return held[date.fromisoformat(context.partition_key)]

    io_manager = LakeAndMongoIOManager(base_url=str(tmp_path), mongo=mongo)

    def build(day: date):
        result = materialize(
            [conversation_messages], resources={"io_manager": io_manager},
            partition_key=day.isoformat(),
        )  # fmt: skip
        assert result.success
        return result.asset_materializations_for_node("conversation_messages")[0].metadata

    build(first)
    build(second)
    collection = mongo.db()[SPEC.name]
    assert collection.count_documents({}) == 3
    assert collection.count_documents({"day": second.isoformat()}) == 1  # written last
    # The copy is gone from the source: the second day is rebuilt without it.
    held[second] = held[second].clear()
    metadata = build(second)
    stored = {doc["message_id"]: doc["day"] for doc in collection.find({})}
    assert stored == dict.fromkeys(day_one["message_id"], first.isoformat())
    assert metadata["mongo_documents_refiled_to_a_neighbouring_day"].value == 1
    # An ordinary rewrite reads the day's keys and refiles nothing.
    assert "mongo_documents_refiled_to_a_neighbouring_day" not in build(first)
    # The other way round: both days hold the message, the first written last, and the
    # source drops the first day's copy: the document moves to the second day.
    held[second] = day_one.head(1).with_columns(pl.lit(second).alias("day"))
    build(second)
    build(first)
    held[first] = day_one.tail(2)
    build(first)
    stored = {doc["message_id"]: doc["day"] for doc in collection.find({})}
    assert stored == {
        "m-2026-11-01-0": second.isoformat(),
        "m-2026-11-01-1": first.isoformat(),
        "m-2026-11-01-2": first.isoformat(),
    }
