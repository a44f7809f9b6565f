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

from pymongo import MongoClient
from pymongo.database import Database

from analytics_assets.settings import Settings
from analytics_assets.storage.embedded import ensure_embedded_mongo
from analytics_assets.storage.migrations import migrate

_clients: dict[str, MongoClient] = {}
_migrated: set[tuple[str, str]] = set()
_clients_lock = threading.Lock()


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
        return ensure_embedded_mongo(Path(self.embedded_data_dir), self.embedded_port)

    def client(self) -> MongoClient:
        """One pooled client per URI and process (MongoClient is thread-safe)."""
        uri = self.resolved_uri()
        with _clients_lock:
            if uri not in _clients:
                # tzinfo=UTC: pymongo's default FixedOffset is not a zone polars recognizes.
                _clients[uri] = MongoClient(
                    uri,
                    tz_aware=True,
                    tzinfo=UTC,
                    serverSelectionTimeoutMS=10_000,
                    retryWrites=True,
                )
            return _clients[uri]

    def db(self) -> Database:
        database = self.client()[self.database]
        key = (self.resolved_uri(), self.database)
        if self.auto_migrate and key not in _migrated:
            with _clients_lock:
                if key not in _migrated:
                    migrate(database, validation_action=self.validation_action)
                    _migrated.add(key)
        return database
