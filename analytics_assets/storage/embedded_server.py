"""The embedded server's entry point: nx-27017, with each batched write committed once.

    python -m analytics_assets.storage.embedded_server --data-dir DIR --port PORT ...

(nx-27017's own arguments; `embedded.ensure_embedded_mongo` starts it.)

Why: nx-27017 0.8.1 stores the documents of an `insert` command (and the replaces of an
`update` command) one by one on a SQLite connection in autocommit mode, so every document is
its own transaction: its table page and one page per index are appended to the write-ahead
log and committed, document after document. Here the whole command runs in one transaction,
taken under the per-database lock nx-27017 itself holds while it handles a command, so no
other client's command on that database runs inside it.

When every document is stored or refused as a duplicate key (a `writeErrors` entry, where an
ordered insert stops), the command is committed and its reply is the one nx-27017 made: the
same outcome per document, sent only after the commit. A server killed before the commit
stored none of the command and acknowledged none (the client retries; our writes are
idempotent, `storage/mongo.py`). Anything else is rolled back and the command is handled
again the way nx-27017 handles it, a document at a time: a document that failed for another
reason (disk full, an I/O error: SQLite may have rolled the transaction back by itself, and
a reply built on it would acknowledge documents it no longer holds), a transaction that
could not start because another process holds the write lock (`index_days_as_dates`
building an index), an exception. A command inside a client's own transaction, and every
other message, passes through untouched. `benchmarks/bench_mongo.py` measures it against
plain nx-27017 in one run; `test_embedded_server.py` shows the outcomes.

Replies are made ready for BSON without copying what needs no change (`bson_ready`):
nx-27017 rebuilds every reply, document by document and value by value, to swap its own
ObjectIds and Decimals for BSON's. That copying was a large part of the server's time to
answer a read (a py-spy profile of the API's pages; `bench_api.py --plain-server` measures
the difference); the bytes sent are the same.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from datetime import datetime
from decimal import Decimal
from typing import Any

from bson import Int64
from bson.decimal128 import Decimal128
from bson.objectid import ObjectId as BsonObjectId
from neosqlite.objectid import ObjectId as NeoObjectId
from nx_27017 import handler as nx_handler
from nx_27017 import wire_protocol as nx_wire_protocol
from nx_27017.nx_27017 import main as nx_main

# nx-27017's own conversion, for what `bson_ready` leaves to it: imported from `utils`, where
# it is defined, since `wire_protocol`'s name for it is the one `install()` replaces.
from nx_27017.utils import convert_neo_to_bson_objectids

logger = logging.getLogger(__name__)

# The write commands that store several documents one by one: `insert` (insert_many) and
# `update` (a bulk of replaces). A delete is one SQL statement, already one transaction.
_BATCHED_COMMANDS = ("insert", "update")
# Fields a command carries only inside a client's transaction (MongoDB's wire protocol).
_TRANSACTION_FIELDS = ("autocommit", "startTransaction")
DUPLICATE_KEY = 11000


def _body(msg: Any) -> dict[str, Any] | None:
    if isinstance(msg, dict):
        for section_type, body in msg.get("sections") or ():
            if section_type == "body" and isinstance(body, dict):
                return body
    return None


def _in_one_transaction(msg: Any) -> bool:
    """Whether the message is a batched write command outside any client transaction."""
    body = _body(msg)
    if not body:
        return False
    command = next(iter(body))
    return command in _BATCHED_COMMANDS and not any(name in body for name in _TRANSACTION_FIELDS)


def _copy(msg: dict[str, Any]) -> dict[str, Any]:
    """The message as it came, for handling it again: nx-27017 pops `$db` from the body
    (the documents themselves it copies before it changes them)."""
    sections = [
        (kind, dict(part) if kind == "body" and isinstance(part, dict) else part)
        for kind, part in msg.get("sections") or ()
    ]
    return {**msg, "sections": sections}


def _only_duplicates(reply: Any) -> bool:
    response = reply[1] if isinstance(reply, tuple) and len(reply) == 2 else None
    if not isinstance(response, dict) or response.get("ok") != 1:
        return False
    return all(error.get("code") == DUPLICATE_KEY for error in response.get("writeErrors", ()))


def commit_once(handle):
    """Wraps a `NeoSQLiteHandler` entry point so that a batched write command is one
    transaction; every other message passes through as it was."""

    @functools.wraps(handle)
    def handle_in_one_transaction(self, msg):
        if not _in_one_transaction(msg):
            return handle(self, msg)
        db_name = nx_handler._msg_db_name(msg)
        # The lock nx-27017's own `_serialize` takes (re-entrant): no other command on this
        # database runs until the commit.
        with self._lock_for(db_name):
            database = self.get_database(db_name)
            connection = database.db
            if connection.in_transaction:  # a client's open transaction decides for itself
                return handle(self, msg)
            # A PRAGMA cannot change inside a transaction: the write concern goes first (nx
            # applies it once per value, so its own call inside is then a no-op).
            self._apply_write_concern(database, db_name, _body(msg).get("writeConcern"))
            as_received = _copy(msg)
            try:
                # IMMEDIATE: the write lock now, waiting out a busy database, rather than a
                # failure at the first write once a read has begun.
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:
                logger.warning("one transaction per batch not started (%s): per document", error)
                return handle(self, as_received)
            try:
                reply = handle(self, msg)
                if connection.in_transaction and _only_duplicates(reply):
                    connection.commit()
                    return reply
            except BaseException:
                if connection.in_transaction:
                    connection.rollback()
                raise
            if connection.in_transaction:
                connection.rollback()
            logger.warning("a batch failed inside its transaction: handled again per document")
            return handle(self, as_received)

    handle_in_one_transaction.commits_once = True
    return handle_in_one_transaction


# Values BSON encodes as they are, which nx-27017's conversion leaves alone; the exact types,
# checked first because they are nearly every value. Anything else is looked at in
# `_bson_ready_value` (a dict or list subclass is left to nx-27017's own function).
_AS_THEY_ARE = frozenset({str, int, float, bool, type(None), datetime, bytes})


def bson_ready(reply: Any) -> Any:
    """What nx-27017's `convert_neo_to_bson_objectids` makes of `reply`, encoded to the same
    bytes: its ObjectIds and Decimals as BSON's, and any value equal to 0 under a key `id`,
    at any depth, as an Int64 (nx-27017 means a cursor's id, but applies it to stored fields
    too, and so does this). Every value is still visited, but a document or list is copied
    only where something in it changes, where nx-27017 copied them all: a find's documents
    are sent as they were loaded, and only the cursor around them is copied for its id."""
    if type(reply) is dict:
        converted = None
        for key, value in reply.items():
            if key == "id" and value == 0:  # nx-27017's rule, tested first as it does
                new = Int64(0)
            elif type(value) in _AS_THEY_ARE:
                continue
            else:
                new = _bson_ready_value(value)
                if new is value:
                    continue
            if converted is None:
                converted = dict(reply)
            converted[key] = new
        return reply if converted is None else converted
    if type(reply) is list:
        return _bson_ready_list(reply)
    return convert_neo_to_bson_objectids(reply)


def _bson_ready_value(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return bson_ready(value)
    if kind is list:
        return _bson_ready_list(value)
    if isinstance(value, NeoObjectId):
        return BsonObjectId(value.binary)
    if isinstance(value, Decimal):
        return Decimal128(value)
    if isinstance(value, dict):
        return convert_neo_to_bson_objectids(value)
    if isinstance(value, list):
        return [_bson_ready_value(item) for item in value]
    return value


def _bson_ready_list(items: list) -> list:
    converted = None
    for index, item in enumerate(items):
        new = item if type(item) in _AS_THEY_ARE else _bson_ready_value(item)
        if new is not item:
            if converted is None:
                converted = list(items)
            converted[index] = new
    return items if converted is None else converted


def install() -> None:
    """Idempotent: patches nx-27017's handler class and reply conversion in this process."""
    handler = nx_handler.NeoSQLiteHandler
    for name in ("handle_insert", "handle_command"):
        method = getattr(handler, name)
        if not getattr(method, "commits_once", False):
            setattr(handler, name, commit_once(method))
    nx_wire_protocol._convert_objectids = bson_ready


if __name__ == "__main__":
    install()
    nx_main()
