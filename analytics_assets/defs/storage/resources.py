"""MongoDB as a Dagster resource: the pure `MongoConnection` with Dagster's config."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource, EnvVar
from pydantic import Field
from pymongo import MongoClient
from pymongo.database import Database

from analytics_assets.storage.connection import MongoConnection


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

    def connection(self) -> MongoConnection:
        # Outside a run (the CLI, the demo's summary) an EnvVar is still unresolved.
        uri = self.uri.get_value() if isinstance(self.uri, EnvVar) else self.uri
        return MongoConnection(
            uri=uri or "",
            database=self.database,
            embedded_data_dir=self.embedded_data_dir,
            embedded_port=self.embedded_port,
            auto_migrate=self.auto_migrate,
            validation_action=self.validation_action,
        )

    def resolved_uri(self) -> str:
        return self.connection().resolved_uri()

    def client(self) -> MongoClient:
        return self.connection().client()

    def db(self) -> Database:
        return self.connection().db()
