"""Seeds a live NocoDB with the sample: creates the tables, then inserts the records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analytics_assets.nocodb.client import NocoDBClient
from analytics_assets.sources.generator import SampleData, iter_for_nocodb

ID_COLUMN = {"column_name": "id", "title": "Id", "uidt": "ID"}

TABLE_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "conversations": [
        ("conversation_id", "SingleLineText"),
        ("user_id", "SingleLineText"),
        ("model", "SingleLineText"),
        ("channel", "SingleLineText"),
        ("started_at", "DateTime"),
        ("rating", "Number"),
    ],
    "messages": [
        ("message_id", "SingleLineText"),
        ("conversation_id", "SingleLineText"),
        ("role", "SingleLineText"),
        ("content", "LongText"),
        ("model", "SingleLineText"),
        ("created_at", "DateTime"),
        ("prompt_tokens", "Number"),
        ("completion_tokens", "Number"),
        ("latency_ms", "Decimal"),
        ("feedback", "SingleLineText"),
    ],
}


@dataclass(frozen=True)
class SeededBase:
    base_id: str
    table_ids: dict[str, str]


def create_base(client: NocoDBClient, title: str) -> str:
    return client.request("POST", "/api/v2/meta/bases", json_body={"title": title})["id"]


def create_table(
    client: NocoDBClient,
    base_id: str,
    title: str,
    columns: list[tuple[str, str]],
    *,
    with_id: bool = True,
) -> str:
    """Creates a table; NocoDB gives it an `Id` only when the ID column is asked for."""
    definitions: list[dict[str, Any]] = [ID_COLUMN] if with_id else []
    definitions += [{"column_name": name, "title": name, "uidt": uidt} for name, uidt in columns]
    body = {"table_name": title, "title": title, "columns": definitions}
    created = client.request(
        "POST", f"/api/v2/meta/bases/{base_id}/tables", json_body=body, idempotent=False
    )
    return created["id"]


def seed_nocodb(client: NocoDBClient, data: SampleData, *, base_title: str) -> SeededBase:
    base_id = create_base(client, base_title)
    table_ids = {
        name: create_table(client, base_id, name, columns)
        for name, columns in TABLE_COLUMNS.items()
    }
    client.insert_records(table_ids["conversations"], iter_for_nocodb(data.conversations))
    client.insert_records(table_ids["messages"], iter_for_nocodb(data.messages))
    return SeededBase(base_id=base_id, table_ids=table_ids)
