"""The embedded MongoDB-compatible server of the local deployment: nx-27017 on loopback.

nx-27017 speaks MongoDB's wire protocol on top of SQLite, so the local deployment runs the
same pymongo code as production with nothing to install by hand. What differs from a real
MongoDB: validators are stored but not enforced, TTL indexes do not expire documents, and
filters on fields other than `_id` scan, except by day once `index_days_as_dates` has run.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def ensure_embedded_mongo(data_dir: Path, port: int, host: str = "127.0.0.1") -> str:
    """Starts nx-27017 on `host:port` unless something already listens there; returns its URI."""
    uri = f"mongodb://{host}:{port}"
    if _listening(host, port):
        return uri
    data_dir.mkdir(parents=True, exist_ok=True)
    log = open(data_dir / "server.log", "ab")  # noqa: SIM115 - handed to the server process
    subprocess.Popen(
        [
            # nx-27017, each batched write committed once (see `embedded_server`).
            sys.executable,
            "-m",
            "analytics_assets.storage.embedded_server",
            "--data-dir",
            str(data_dir),
            "--host",
            host,
            "--port",
            str(port),
            "--log-file",
            str(data_dir / "nx-27017.log"),
            "--pid-file",
            str(data_dir / "nx-27017.pid"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Outlives the command that started it, like a database should.
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not _listening(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nx-27017 did not start on {uri}; see {data_dir / 'server.log'}")
        time.sleep(0.1)
    return uri


# Why an index made outside the wire protocol: nx-27017 (neosqlite 1.17) compares a value that
# looks like a date, such as a day "2026-09-01", as a date, through the expression below, and no
# index it creates matches that expression, so every query and delete by day scanned the whole
# collection. Writing a day looked for the day's documents and deleted its stale ones: two
# scans per day and collection, which made a backfill's mirror grow with days x documents.
# An index on that very expression, made in the server's own SQLite file, turns them into
# index searches (`benchmarks/bench_mongo.py --days`).
DAY_AS_DATE_INDEX_PREFIX = "embedded_day_as_date_"
_DAY_AS_DATE = (
    "datetime(COALESCE(json_extract(data, '$.{field}.\"$date\"'), json_extract(data, '$.{field}')))"
)


def index_days_as_dates(
    data_dir: Path, database: str, collections: Iterable[str], day_field: str = "day"
) -> list[str]:
    """Indexes `day_field` the way the embedded server queries it, in each of `collections`
    that exists; returns those indexed. Idempotent. Does nothing when the database's file is
    not there (a server started on another folder, or not started), and only logs when
    SQLite refuses (the index speeds queries up; nothing depends on it)."""
    path = data_dir / f"{database}.db"
    if not path.exists():
        return []
    try:
        # mode=rw: never create a file the server does not use.
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=60)
        try:
            listed = connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
            tables = {name for (name,) in listed}
            indexed = [name for name in collections if name in tables]
            for name in indexed:
                connection.execute(
                    f'CREATE INDEX IF NOT EXISTS "{DAY_AS_DATE_INDEX_PREFIX}{name}" ON "{name}"'
                    f"({_DAY_AS_DATE.format(field=day_field)})"
                )
            connection.commit()
        finally:
            connection.close()
    except sqlite3.Error as error:
        logger.warning("embedded server's days not indexed (%s): queries by day scan", error)
        return []
    return indexed
