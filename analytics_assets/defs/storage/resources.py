"""MongoDB as a Dagster resource: a real URI in production, the embedded server locally."""

from __future__ import annotations

import threading
from datetime import UTC
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource, EnvVar
from pydantic import Field
from pymongo import MongoClient
from pymongo.database import Database

from analytics_assets.storage.embedded import ensure_embedded_mongo
from analytics_assets.storage.migrations import migrate

_clients: dict[str, MongoClient] = {}
_migrated: set[tuple[str, str]] = set()
_clients_lock = threading.Lock()


class MongoResource(ConfigurableResource):
    """The URI is a secret (it holds credentials): pass it as an EnvVar; it is never logged."""

    uri: str = Field(
        default="",
        description="mongodb:// or mongodb+srv:// URI (MONGODB_URI); empty starts the embedded "
        "server in embedded_data_dir.",
    )
    database: str = Field(default="analytics", description="Database name.")
    embedded_data_dir: str | None = Field(
        default=None, description="Data folder of the embedded nx-27017 server (local only)."
    )
    embedded_port: int = Field(default=27018, description="Loopback port of the embedded server.")
    auto_migrate: bool = Field(
        default=True,
        description="Apply pending schema migrations (idempotent) before the first use.",
    )
    validation_action: Literal["error", "warn"] = Field(
        default="error", description="What the server does with a document its validator refuses."
    )

    def resolved_uri(self) -> str:
        # Outside a run (the CLI, the demo's summary) an EnvVar is still unresolved.
        uri = self.uri.get_value() if isinstance(self.uri, EnvVar) else self.uri
        if uri:
            return uri
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
        client = self.client()
        database = client[self.database]
        key = (self.resolved_uri(), self.database)
        if self.auto_migrate and key not in _migrated:
            with _clients_lock:
                if key not in _migrated:
                    migrate(database, validation_action=self.validation_action)
                    _migrated.add(key)
        return database
