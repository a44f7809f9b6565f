"""The embedded server the local deployment runs: nx-27017 with each batched write committed
once (`storage/embedded_server.py`), and the index on days the embedded server can use
(`storage/embedded.py`). Real servers on loopback; SQLite read directly where the point is
what the server's own file holds."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from pathlib import Path

import pytest
from pymongo import InsertOne, MongoClient, ReplaceOne
from pymongo.errors import BulkWriteError

from analytics_assets.storage.collections import COLLECTIONS, DAY_FIELD
from analytics_assets.storage.connection import MongoConnection
from analytics_assets.storage.embedded import DAY_AS_DATE_INDEX_PREFIX, index_days_as_dates
from analytics_assets.storage.embedded_server import commit_once
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
    autocommit mode (as nx-27017 opens it)."""

    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("CREATE TABLE documents (id INTEGER PRIMARY KEY)")
        self.lock = threading.RLock()

    def _lock_for(self, db_name: str) -> threading.RLock:
        return self.lock

    def get_database(self, db_name: str):
        return type("Database", (), {"db": self.connection})()


def _message(command: str, **fields) -> dict:
    return {"sections": [("body", {command: "documents", **fields, "$db": "db"})]}


def test_commit_once_commits_a_batch_and_rolls_back_a_failure_whole(tmp_path):
    handler = _Handler(tmp_path / "db.sqlite")
    seen_in_transaction = []

    def insert_rows(self, msg, fail=False):
        seen_in_transaction.append(self.connection.in_transaction)
        for row in range(3):
            self.connection.execute(
                "INSERT INTO documents VALUES (?)", (len(seen_in_transaction) * 10 + row,)
            )
        if fail:
            raise RuntimeError("the handler broke half way")
        return "reply"

    wrapped = commit_once(insert_rows)
    assert wrapped(handler, _message("insert")) == "reply"
    assert not handler.connection.in_transaction
    assert handler.connection.execute("SELECT count(*) FROM documents").fetchone() == (3,)

    with pytest.raises(RuntimeError):
        commit_once(lambda self, msg: insert_rows(self, msg, fail=True))(
            handler, _message("update")
        )
    assert not handler.connection.in_transaction
    assert handler.connection.execute("SELECT count(*) FROM documents").fetchone() == (3,)

    # Reads, other commands and a client's own transaction pass through untouched.
    for message in (
        _message("find"),
        _message("delete"),
        _message("insert", autocommit=False),
        _message("insert", startTransaction=True, autocommit=False),
    ):
        wrapped(handler, message)
    assert seen_in_transaction == [True, True, False, False, False, False]


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
        # Idempotent; and a backup never carries the embedded server's own index.
        assert index_days_as_dates(tmp_path, "analytics", COLLECTIONS) == list(COLLECTIONS)
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
        pid = int((tmp_path / "nx-27017.pid").read_text())
        os.kill(pid, signal.SIGTERM)


def test_no_index_is_made_where_the_server_keeps_no_file(tmp_path):
    assert index_days_as_dates(tmp_path, "analytics", COLLECTIONS) == []
    assert not (tmp_path / "analytics.db").exists()
