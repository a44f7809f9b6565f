"""The embedded server's entry point: nx-27017, with each batched write committed once.

    python -m analytics_assets.storage.embedded_server --data-dir DIR --port PORT ...

(nx-27017's own arguments; `embedded.ensure_embedded_mongo` starts it.)

Why: nx-27017 0.8.1 stores the documents of an `insert` command (and the replaces of an
`update` command) one by one on a SQLite connection in autocommit mode, so every document is
its own transaction: its table page and one page per index are appended to the write-ahead
log and committed, document after document. Here the whole command runs in one transaction,
taken under the per-database lock nx-27017 itself holds while it handles a command, so no
other client's command can fall inside it.

What a client sees does not change: each document still succeeds or fails on its own (a
duplicate key is still a `writeErrors` entry, and an ordered insert still stops at it), and
the reply is sent only after the commit. A server killed before the commit stored none of
the command's documents and acknowledged none; the client retries, and our writes are
idempotent (`storage/mongo.py`). A command inside a client's own transaction is left alone.
`benchmarks/bench_mongo.py` measures it against plain nx-27017 in one run.
"""

from __future__ import annotations

import functools
from typing import Any

from nx_27017 import handler as nx_handler
from nx_27017.nx_27017 import main as nx_main

# The write commands that store several documents one by one: `insert` (insert_many) and
# `update` (a bulk of replaces). A delete is one SQL statement, already one transaction.
_BATCHED_COMMANDS = ("insert", "update")
# Fields a command carries only inside a client's transaction (MongoDB's wire protocol).
_TRANSACTION_FIELDS = ("autocommit", "startTransaction")


def _in_one_transaction(msg: Any) -> bool:
    """Whether the message is a batched write command outside any client transaction."""
    if not isinstance(msg, dict):
        return False
    for section_type, body in msg.get("sections") or ():
        if section_type == "body" and isinstance(body, dict) and body:
            command = next(iter(body))
            return command in _BATCHED_COMMANDS and not any(
                name in body for name in _TRANSACTION_FIELDS
            )
    return False


def commit_once(handle):
    """Wraps a `NeoSQLiteHandler` entry point so that a batched write command is one
    transaction; every other message passes through as it was."""

    @functools.wraps(handle)
    def handle_in_one_transaction(self, msg):
        if not _in_one_transaction(msg):
            return handle(self, msg)
        db_name = nx_handler._msg_db_name(msg)
        # The lock nx-27017's own `_serialize` takes (re-entrant): nothing else runs on this
        # database's connection until the commit.
        with self._lock_for(db_name):
            connection = self.get_database(db_name).db
            if connection.in_transaction:  # a client's open transaction decides for itself
                return handle(self, msg)
            connection.execute("BEGIN")
            try:
                result = handle(self, msg)
            except BaseException:
                connection.rollback()
                raise
            if connection.in_transaction:
                connection.commit()
            return result

    handle_in_one_transaction.commits_once = True
    return handle_in_one_transaction


def install() -> None:
    """Idempotent: patches nx-27017's handler class in this process."""
    handler = nx_handler.NeoSQLiteHandler
    for name in ("handle_insert", "handle_command"):
        method = getattr(handler, name)
        if not getattr(method, "commits_once", False):
            setattr(handler, name, commit_once(method))


if __name__ == "__main__":
    install()
    nx_main()
