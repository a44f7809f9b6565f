"""The embedded server the local deployment runs: nx-27017 with each batched write committed
once (`storage/embedded_server.py`), and the index on days the embedded server can use
(`storage/embedded.py`). Real servers on loopback; SQLite read directly where the point is
what the server's own file holds."""

from __future__ import annotations

import copy
import os
import signal
import sqlite3
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import bson
import pytest
from bson.binary import Binary
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.son import SON
from hypothesis import given, settings
from hypothesis import strategies as st
from neosqlite.objectid import ObjectId as NeoObjectId
from nx_27017 import handler as nx_handler
from nx_27017 import wire_protocol
from nx_27017.utils import convert_neo_to_bson_objectids
from pymongo import InsertOne, MongoClient, ReplaceOne
from pymongo.errors import BulkWriteError

from analytics_assets.storage import embedded_server
from analytics_assets.storage.collections import COLLECTIONS, DAY_FIELD
from analytics_assets.storage.connection import MongoConnection
from analytics_assets.storage.embedded import DAY_AS_DATE_INDEX_PREFIX, index_days_as_dates
from analytics_assets.storage.embedded_server import bson_ready, commit_once
from analytics_assets_tests.conftest import start_mongo, stop_mongo
from analytics_assets_tests.nocodb_server import free_port


@pytest.fixture()
def collection(mongo_server, request):
    client = MongoClient(mongo_server)
    name = "t_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:50]
    yield client[name]["documents"]
    client.drop_database(name)
    client.close()


def test_an_unordered_batch_keeps_each_documents_own_outcome(collection):
    collection.insert_one({"_id": "d3", "v": "stored before"})
    batch = [{"_id": f"d{n}", "v": n} for n in range(6)]
    with pytest.raises(BulkWriteError) as raised:
        collection.insert_many(batch, ordered=False)
    details = raised.value.details
    assert details["nInserted"] == 5
    assert [(error["index"], error["code"]) for error in details["writeErrors"]] == [(3, 11000)]
    assert collection.count_documents({}) == 6
    assert collection.find_one({"_id": "d3"})["v"] == "stored before"


def test_an_ordered_batch_stops_at_its_first_error_and_keeps_what_came_before(collection):
    collection.insert_one({"_id": "d2"})
    with pytest.raises(BulkWriteError) as raised:
        collection.insert_many([{"_id": f"d{n}"} for n in range(5)], ordered=True)
    assert raised.value.details["nInserted"] == 2
    assert sorted(doc["_id"] for doc in collection.find({})) == ["d0", "d1", "d2"]


def test_a_bulk_of_replaces_lands_whole(collection):
    collection.insert_many([{"_id": f"d{n}", "v": 0} for n in range(50)])
    result = collection.bulk_write(
        [ReplaceOne({"_id": f"d{n}"}, {"v": n, "w": "new"}) for n in range(50)]
        + [InsertOne({"_id": "d50", "v": 50})],
        ordered=False,
    )
    assert (result.matched_count, result.inserted_count) == (50, 1)
    assert sorted(doc["v"] for doc in collection.find({"w": "new"})) == list(range(50))


def test_a_client_transaction_is_left_to_the_client(collection):
    client = collection.database.client
    # Made outside: nx-27017 forgets that an aborted transaction's insert made the table.
    collection.database.create_collection(collection.name)
    with client.start_session() as session:
        session.start_transaction()
        collection.insert_many([{"_id": "a"}, {"_id": "b"}], session=session)
        session.abort_transaction()
    assert collection.count_documents({}) == 0
    with client.start_session() as session, session.start_transaction():
        collection.insert_many([{"_id": "a"}, {"_id": "b"}], session=session)
    assert collection.count_documents({}) == 2


def test_an_acknowledged_batch_survives_the_server_being_killed(tmp_path):
    port = free_port()
    process = start_mongo(tmp_path, port)
    try:
        with MongoClient(f"mongodb://127.0.0.1:{port}") as client:
            client["db"]["documents"].insert_many(
                [{"_id": n, "text": "x" * 500} for n in range(2000)]
            )
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        process = start_mongo(tmp_path, port)
        with MongoClient(f"mongodb://127.0.0.1:{port}") as client:
            assert client["db"]["documents"].count_documents({}) == 2000
    finally:
        stop_mongo(process)


class _Handler:
    """Just what `commit_once` uses of nx-27017's handler, on a real SQLite connection in
    autocommit mode (as nx-27017 opens it). The wrapped function plays nx-27017's command
    handler: it writes rows and answers with a reply of nx-27017's shape."""

    def __init__(self, path: Path) -> None:
        # A short busy timeout: the test of a locked database waits for it.
        self.connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=0.2
        )
        self.connection.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY)")
        self.lock = threading.RLock()
        self.calls: list[bool] = []  # in a transaction, per call of the wrapped handler

    def _lock_for(self, db_name: str) -> threading.RLock:
        return self.lock

    def get_database(self, db_name: str):
        return type("Database", (), {"db": self.connection})()

    def _apply_write_concern(self, database, db_name: str, write_concern) -> None:
        assert not self.connection.in_transaction  # a PRAGMA cannot change inside one

    def stored(self) -> int:
        return self.connection.execute("SELECT count(*) FROM documents").fetchone()[0]


def _message(command: str, **fields) -> dict:
    return {"sections": [("body", {command: "documents", **fields, "$db": "db"})]}


def _handler_writing(rows: int, *, write_errors=(), midway=None, fail=False):
    """A stand-in for nx-27017's handler: writes `rows` rows (new ids on every call), running
    `midway` half way through the first call, then replies with `write_errors` (or raises)."""

    def handle(self, msg):
        msg["sections"][0][1].pop("$db")  # as nx-27017 does
        self.calls.append(self.connection.in_transaction)
        for row in range(rows):
            if midway and row == rows // 2 and len(self.calls) == 1:  # the first try only
                midway(self)
            self.connection.execute(
                "INSERT INTO documents VALUES (?)", (len(self.calls) * 100 + row,)
            )
        if fail:
            raise RuntimeError("the handler broke half way")
        reply = {"ok": 1, "n": rows - len(write_errors)}
        if write_errors:
            reply["writeErrors"] = [{"index": 0, "code": code} for code in write_errors]
        return 1, reply

    return commit_once(handle)


def test_a_batch_is_committed_once_with_the_reply_nx_made(tmp_path):
    handler = _Handler(tmp_path / "db.sqlite")
    assert _handler_writing(4)(handler, _message("insert"))[1]["n"] == 4
    # Duplicate keys are per-document outcomes: still one transaction, committed.
    _handler_writing(4, write_errors=[11000])(handler, _message("update"))
    assert handler.calls == [True, True]
    assert not handler.connection.in_transaction
    assert handler.stored() == 8


def test_a_batch_that_raises_stores_nothing(tmp_path):
    handler = _Handler(tmp_path / "db.sqlite")
    with pytest.raises(RuntimeError):
        _handler_writing(4, fail=True)(handler, _message("insert"))
    assert not handler.connection.in_transaction
    assert handler.stored() == 0


def test_a_batch_sqlite_rolled_back_by_itself_is_handled_again_per_document(tmp_path):
    # Disk full or an I/O error: SQLite ends the transaction itself, the handler carries on in
    # autocommit and would report every document stored. The wrapper handles the command
    # again, the way plain nx-27017 does, instead of sending that reply.
    handler = _Handler(tmp_path / "db.sqlite")
    reply = _handler_writing(4, midway=lambda self: self.connection.execute("ROLLBACK"))(
        handler, _message("insert")
    )
    assert handler.calls == [True, False]
    assert reply[1]["n"] == 4
    assert handler.stored() == 2 + 4  # the second half of the first try, then all four


def test_a_batch_with_another_failure_is_handled_again_per_document(tmp_path):
    handler = _Handler(tmp_path / "db.sqlite")
    _handler_writing(4, write_errors=[13])(handler, _message("insert"))
    assert handler.calls == [True, False]
    assert handler.stored() == 4  # the first try rolled back


def test_a_locked_database_is_written_per_document(tmp_path):
    handler = _Handler(tmp_path / "db.sqlite")
    other = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process building an index
    try:
        with pytest.raises(sqlite3.OperationalError):
            _handler_writing(4)(handler, _message("insert"))
        assert handler.calls == [False]  # nx-27017's own path, which meets the lock itself
    finally:
        other.rollback()
    _handler_writing(4)(handler, _message("insert"))
    assert handler.calls == [False, True]


def test_other_messages_and_client_transactions_pass_through(tmp_path):
    handler = _Handler(tmp_path / "db.sqlite")
    wrapped = _handler_writing(1)
    for message in (
        _message("find"),
        _message("delete"),
        _message("insert", autocommit=False),
        _message("insert", startTransaction=True, autocommit=False),
    ):
        wrapped(handler, message)
    assert handler.calls == [False] * 4


def test_a_batch_the_server_dies_in_is_stored_whole_or_not_at_all(tmp_path):
    # One insert command of 30,000 documents (under the 48 MB message limit): plain
    # nx-27017 killed half way keeps the first part; this server keeps none of it, or all of
    # it once it has replied.
    documents = [{"_id": n, "text": "x" * 1000} for n in range(30_000)]
    port = free_port()
    process = start_mongo(tmp_path, port)
    outcome: dict[str, object] = {}
    try:
        client = MongoClient(
            f"mongodb://127.0.0.1:{port}", retryWrites=False, serverSelectionTimeoutMS=2000
        )

        def insert() -> None:
            try:
                client["db"]["documents"].insert_many(documents)
                outcome["acknowledged"] = True
            except Exception as error:  # the kill, whatever pymongo calls it
                outcome["error"] = error

        writer = threading.Thread(target=insert)
        writer.start()
        time.sleep(0.6)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        writer.join(timeout=30)
        client.close()
        process = start_mongo(tmp_path, port)
        with MongoClient(f"mongodb://127.0.0.1:{port}") as reader:
            stored = reader["db"]["documents"].count_documents({})
        assert stored == (len(documents) if outcome.get("acknowledged") else 0), outcome
    finally:
        stop_mongo(process)


def test_days_are_indexed_the_way_the_embedded_server_queries_them(tmp_path):
    import neosqlite

    from analytics_assets.storage.backup import _index_entries

    connection = MongoConnection(embedded_data_dir=str(tmp_path), embedded_port=free_port())
    try:
        db = connection.db()  # starts the server, migrates, indexes the days
        db["conversation_messages"].insert_one({"_id": "m1", DAY_FIELD: "2026-09-01"})
        path = tmp_path / "analytics.db"
        with sqlite3.connect(path) as sqlite:
            indexes = {
                name
                for (name,) in sqlite.execute("SELECT name FROM sqlite_master WHERE type='index'")
            }
        assert {f"{DAY_AS_DATE_INDEX_PREFIX}{name}" for name in COLLECTIONS} <= indexes
        # Made again where missing (a restore drops collections), once where present; and a
        # backup never carries the embedded server's own index.
        with sqlite3.connect(path) as sqlite:
            sqlite.execute(f'DROP INDEX "{DAY_AS_DATE_INDEX_PREFIX}conversation_messages"')
        assert index_days_as_dates(tmp_path, "analytics", COLLECTIONS) == list(COLLECTIONS)
        assert index_days_as_dates(tmp_path, "analytics", COLLECTIONS) == list(COLLECTIONS)
        with sqlite3.connect(path) as sqlite:
            again = [
                name
                for (name,) in sqlite.execute("SELECT name FROM sqlite_master WHERE type='index'")
            ]
        assert sorted(again) == sorted(indexes)
        assert not any(
            entry["name"].startswith(DAY_AS_DATE_INDEX_PREFIX)
            for entry in _index_entries(db, "conversation_messages")
        )
        # The SQL the pinned neosqlite makes of a query by day searches that index, for a
        # plain day and with another field beside it (the stale-document delete).
        reader = neosqlite.Connection(str(path))
        engine = reader["conversation_messages"].query_engine
        for query in (
            {DAY_FIELD: "2026-09-01"},
            {DAY_FIELD: "2026-09-01", "written_by_run": {"$ne": "run-2"}},
        ):
            where, params = engine.sql_translator.translate_match(query)
            plan = reader.db.execute(
                f"EXPLAIN QUERY PLAN SELECT id FROM conversation_messages {where}", params
            ).fetchall()
            assert any(f"USING INDEX {DAY_AS_DATE_INDEX_PREFIX}" in str(step) for step in plan)
        reader.close()
    finally:
        pid_file = tmp_path / "nx-27017.pid"
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_no_index_is_made_where_the_server_keeps_no_file(tmp_path):
    assert index_days_as_dates(tmp_path, "analytics", COLLECTIONS) == []
    assert not (tmp_path / "analytics.db").exists()


def test_a_file_sqlite_refuses_leaves_the_days_unindexed_and_says_so(tmp_path, caplog):
    (tmp_path / "analytics.db").write_bytes(b"not a database " * 100)
    assert index_days_as_dates(tmp_path, "analytics", COLLECTIONS) == []
    assert "not indexed" in caplog.text


# What a reply can hold: what nx-27017 loads from its file (its own ObjectIds, Decimals,
# datetimes, text, numbers) and what a command's reply adds, nested in documents and lists;
# keys include `id`, whose 0 nx-27017 sends as an Int64.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
    | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1))
    | st.decimals(
        allow_nan=False, allow_infinity=False, places=4, max_value=10**12, min_value=-(10**12)
    )
    | st.binary(min_size=12, max_size=12).map(NeoObjectId)
    | st.sampled_from([0, 0.0, False, Decimal("0"), Decimal("-0"), Int64(0), Int64(7)])
    # What BSON knows that nx-27017 leaves alone: its ObjectIds, binaries, 64-bit integers.
    | st.binary(min_size=12, max_size=12).map(ObjectId)
    | st.binary(max_size=4).map(lambda data: Binary(data, 5))
    | st.integers(min_value=-(2**63), max_value=2**63 - 1).map(Int64)
)
_KEYS = st.sampled_from(["id", "_id", "a", "b", "cursor", "firstBatch"]) | st.text(max_size=4)


class _ListSubclass(list):
    pass


_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS, inner, max_size=4)
        # Subclasses and tuples take nx-27017's own path (or none): still the same bytes.
        | st.lists(inner, max_size=3).map(_ListSubclass)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_KEYS, inner, max_size=3).map(SON)
        | st.dictionaries(_KEYS, inner, max_size=3).map(OrderedDict)
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_KEYS, _VALUES, max_size=6))
def test_a_reply_is_encoded_to_the_bytes_nx_27017_makes_and_left_as_it_was(document):
    before = copy.deepcopy(document)
    assert _encoded(bson_ready, document) == _encoded(convert_neo_to_bson_objectids, document)
    assert repr(document) == repr(before)  # nothing converted in place


def _encoded(convert, document) -> bytes | str:
    """The reply's bytes, or the error encoding it ends in (a key with a NUL, half an emoji)."""
    try:
        return bson.encode(convert(document))
    except Exception as error:  # the same failure is the same outcome
        return f"{type(error).__name__}: {error}"


def test_the_server_module_puts_its_conversion_where_nx_27017_encodes_replies(monkeypatch):
    # What install() patches in this process is put back afterwards.
    monkeypatch.setattr(wire_protocol, "_convert_objectids", wire_protocol._convert_objectids)
    for name in ("handle_insert", "handle_command"):
        monkeypatch.setattr(
            nx_handler.NeoSQLiteHandler, name, getattr(nx_handler.NeoSQLiteHandler, name)
        )
    embedded_server.install()
    assert wire_protocol._convert_objectids is bson_ready
    # The name is looked up in the module each time a reply is built.
    for build in (wire_protocol.ResponseBuilder.build_op_msg_reply,
                  wire_protocol.ResponseBuilder.build_reply):  # fmt: skip
        assert build.__globals__ is vars(wire_protocol)
        assert "_convert_objectids" in _global_names(build.__code__)


def _global_names(code) -> set[str]:
    """The names a function's code looks up, its generator expressions' included."""
    nested = (const for const in code.co_consts if hasattr(const, "co_names"))
    return set(code.co_names).union(*(_global_names(inner) for inner in nested))


def test_a_plain_reply_is_sent_as_it_is_and_only_what_changes_is_copied():
    plain = {"cursor": {"firstBatch": [{"_id": "c1", "n": 1}], "id": 5}, "ok": 1.0}
    assert bson_ready(plain) is plain
    # A last batch's cursor id is 0: only the cursor around the documents is copied.
    documents = [{"_id": "c1", "n": 1}]
    last = {"cursor": {"firstBatch": documents, "id": 0}, "ok": 1.0}
    ready = bson_ready(last)
    assert ready["cursor"]["firstBatch"] is documents and type(ready["cursor"]["id"]) is Int64
    neo = NeoObjectId(b"\x01" * 12)
    reply = {"cursor": {"firstBatch": [{"_id": neo}, {"_id": "c2"}], "id": 0}, "ok": 1.0}
    ready = bson_ready(reply)
    batch = ready["cursor"]["firstBatch"]
    assert (
        batch[0]["_id"] == ObjectId(b"\x01" * 12) and batch[1] is reply["cursor"]["firstBatch"][1]
    )
    assert type(ready["cursor"]["id"]) is Int64
    assert reply["cursor"]["firstBatch"][0]["_id"] is neo and reply["cursor"]["id"] == 0


def test_what_a_client_writes_it_reads_back_through_the_server(collection):
    # (nx-27017 cannot store a Decimal128 at all: the conversion's Decimal case is the
    # property test's alone.)
    written = {
        "_id": ObjectId(),
        "oid": ObjectId(),
        "at": datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
        "id": 0,
        "nested": [{"oid": ObjectId(), "id": 0}, [1, "two", None]],
    }
    collection.insert_one(dict(written))
    for found in (collection.find_one({"_id": written["_id"]}), *collection.find({})):
        assert (
            found["oid"] == written["oid"]
            and found["nested"][0]["oid"] == written["nested"][0]["oid"]
        )
        assert found["nested"][1] == [1, "two", None]
        assert found["at"].replace(tzinfo=UTC) == written["at"] and found["id"] == 0
