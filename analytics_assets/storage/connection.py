"""A MongoDB database handle: a real URI in production, the embedded server locally.

Pure (no Dagster): the read API and the CLI connect through this; `MongoResource` in
`defs/storage/resources.py` is the same connection as a Dagster resource.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Literal

import pymongo
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from analytics_assets.settings import Settings
from analytics_assets.storage.collections import COLLECTIONS, DAY_FIELD
from analytics_assets.storage.embedded import (
    _listening,
    ensure_embedded_mongo,
    index_days_as_dates,
)
from analytics_assets.storage.migrations import migrate

_clients: dict[str, MongoClient] = {}
_migrated: set[tuple[str, str]] = set()
_clients_lock = threading.Lock()
EMBEDDED_HOST = "127.0.0.1"
# Server error codes of a refused login, and of a server without the saslStart command.
_AUTHENTICATION_FAILED = {11, 18}
_COMMAND_NOT_FOUND = 59


class MongoAuthenticationError(RuntimeError):
    """The server refused the URI's credentials, or cannot check them. The message names
    the hosts, never the URI (it holds the password); the CLI prints it as one line."""


def _has_credentials(uri: str) -> bool:
    """Whether the URI carries `user[:password]@` (pymongo insists `@` and `/` in them are
    percent-escaped, so the first `@` before the path ends the user info)."""
    authority = uri.partition("://")[2].partition("/")[0].partition("?")[0]
    return "@" in authority


def _hosts(client: MongoClient) -> str:
    addresses = sorted(client.topology_description.server_descriptions())
    return ", ".join(f"{host}:{port}" for host, port in addresses) or "the MongoDB server"


def _check_authentication(client: MongoClient) -> None:
    """pymongo authenticates a connection on its first command; against a server without
    SCRAM (nx-27017 is one) it fails inside the SCRAM exchange with a bare KeyError. One
    ping here turns that, and a refused login, into `MongoAuthenticationError`; any other
    failure (an unreachable server) is left to the caller, as pymongo raises it."""
    try:
        client.admin.command("ping")
    except (KeyError, TypeError, ValueError):
        reason = "authentication failed: the server does not support SCRAM authentication"
    except OperationFailure as error:
        if error.code == _COMMAND_NOT_FOUND:
            reason = "authentication failed: the server does not support SCRAM authentication"
        elif error.code in _AUTHENTICATION_FAILED:
            reason = "authentication failed (check the user and password in MONGODB_URI)"
        else:
            raise
    else:
        return
    raise MongoAuthenticationError(f"MongoDB at {_hosts(client)}: {reason}.")


@dataclass(frozen=True)
class MongoConnection:
    """`uri` holds credentials: it is never logged or shown (see `__repr__`)."""

    uri: str = ""
    database: str = "analytics"
    embedded_data_dir: str | None = None
    embedded_port: int = 27018
    auto_migrate: bool = True
    validation_action: Literal["error", "warn"] = "error"

    def __repr__(self) -> str:
        where = "uri=<set>" if self.uri else f"embedded={self.embedded_data_dir}"
        return f"MongoConnection({where}, database={self.database!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> MongoConnection:
        if settings.uses_external_mongodb:
            uri = settings.mongodb_uri.get_secret_value() if settings.mongodb_uri else ""
            if not uri:
                raise ValueError("The prod deployment needs MONGODB_URI.")
            return cls(uri=uri, database=settings.mongodb_database)
        return cls(
            embedded_data_dir=settings.embedded_mongo_dir,
            embedded_port=settings.embedded_mongo_port,
            database=settings.mongodb_database,
        )

    def resolved_uri(self) -> str:
        if self.uri:
            return self.uri
        if not self.embedded_data_dir:
            raise ValueError("Set MONGODB_URI, or embedded_data_dir for the embedded server.")
        return ensure_embedded_mongo(
            Path(self.embedded_data_dir), self.embedded_port, EMBEDDED_HOST
        )

    def client(self) -> MongoClient:
        """One pooled client per URI and process (MongoClient is thread-safe). A URI with
        credentials is checked once, when its client is made: `MongoAuthenticationError`
        if the server refuses them or cannot check them."""
        return _client_for(self.resolved_uri())

    def ping(self, timeout_s: float = 2.0) -> bool:
        """Whether the database answers a ping within `timeout_s`, with no side effect:
        never starts the embedded server (False while nothing listens on its port; no
        process, thread, client or data folder is made), never migrates. False too when
        the server is unreachable or refuses the credentials. For readiness probes."""
        if self.uri:
            uri = self.uri
        elif _listening(EMBEDDED_HOST, self.embedded_port):
            uri = f"mongodb://{EMBEDDED_HOST}:{self.embedded_port}"
        else:
            return False
        try:
            with pymongo.timeout(timeout_s):
                _client_for(uri).admin.command("ping")
        except (PyMongoError, MongoAuthenticationError):
            return False
        return True

    def db(self) -> Database:
        database = self.client()[self.database]
        key = (self.resolved_uri(), self.database)
        if self.auto_migrate and key not in _migrated:
            migrated_here = False
            with _clients_lock:
                if key not in _migrated:
                    migrate(database, validation_action=self.validation_action)
                    _migrated.add(key)
                    migrated_here = True
            if migrated_here and not self.uri and self.embedded_data_dir:
                # Once per process (a restore drops and re-creates collections), outside the
                # lock: building an index on a large collection takes seconds.
                index_days_as_dates(
                    Path(self.embedded_data_dir), self.database, COLLECTIONS, DAY_FIELD
                )
        return database


def _client_for(uri: str) -> MongoClient:
    with _clients_lock:
        if uri in _clients:
            return _clients[uri]
    # tzinfo=UTC: pymongo's default FixedOffset is not a zone polars recognizes.
    client = MongoClient(
        uri, tz_aware=True, tzinfo=UTC, serverSelectionTimeoutMS=10_000, retryWrites=True
    )
    if _has_credentials(uri):
        try:
            _check_authentication(client)
        except BaseException:
            client.close()  # not kept: the next call checks again
            raise
    with _clients_lock:
        kept = _clients.setdefault(uri, client)
    if kept is not client:
        client.close()  # another thread made one first
    return kept
