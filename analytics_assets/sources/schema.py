"""The mapping between the product's canonical fields and a team's NocoDB tables.

Every team names its tables and columns differently, so the pipeline only ever speaks
canonical names and this mapping is the single place that knows the source's names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

TableKind = Literal["conversations", "messages"]
TABLE_KINDS: tuple[TableKind, ...] = ("conversations", "messages")

# NocoDB's system columns. They are part of every table NocoDB creates.
SYSTEM_FIELDS = ("CreatedAt", "UpdatedAt")

CANONICAL_FIELDS: dict[TableKind, tuple[str, ...]] = {
    "conversations": (
        "conversation_id",
        "user_id",
        "model",
        "channel",
        "started_at",
        "rating",
        *SYSTEM_FIELDS,
    ),
    "messages": (
        "message_id",
        "conversation_id",
        "role",
        "content",
        "model",
        "created_at",
        "prompt_tokens",
        "completion_tokens",
        "latency_ms",
        "feedback",
        *SYSTEM_FIELDS,
    ),
}

# The fields no record can be read without (validation rejects a record missing one; an
# assistant's or tool's message may lack `content`, which is then kept empty). A table
# without the column of another field (`feedback` dropped, `latency_ms` never added) is read
# with that field null: a missing optional column stopped every pull.
REQUIRED_FIELDS: dict[TableKind, frozenset[str]] = {
    "conversations": frozenset({"conversation_id", "user_id", "started_at"}),
    "messages": frozenset({"message_id", "conversation_id", "role", "content", "created_at"}),
}

# The event time that decides a record's daily partition, and the key that identifies it.
EVENT_TIME_FIELD: dict[TableKind, str] = {"conversations": "started_at", "messages": "created_at"}
KEY_FIELD: dict[TableKind, str] = {"conversations": "conversation_id", "messages": "message_id"}

# A message's role as the pipeline names it. `tool`: a function's or tool's output, which an
# assistant that calls tools logs between the user's turn and its reply (rejected as an
# invalid role, such logs lost a message per call and marked their days incomplete).
MESSAGE_ROLES = ("user", "assistant", "system", "tool")
# What common chat formats call those roles (compared in lower case): ShareGPT's human/gpt,
# LangChain's human/ai, Gemini's model, Cohere's chatbot, Flowise's userMessage/apiMessage,
# OpenAI's developer (a system message) and function (a tool's output), Llama 3's ipython.
# A deployment adds its own with `role_names` (NOCODB_ROLE_NAMES).
ROLE_ALIASES: dict[str, str] = {
    "human": "user",
    "usermessage": "user",
    "gpt": "assistant",
    "ai": "assistant",
    "model": "assistant",
    "chatbot": "assistant",
    "apimessage": "assistant",
    "developer": "system",
    "function": "tool",
    "ipython": "tool",
}


class SourceSchema(BaseModel, frozen=True):
    """Names of the source tables and of any field that differs from the canonical name.

    Plain pydantic, so the pure transforms can take it without loading Dagster;
    `defs/ingestion/resources.py` declares the Dagster config that builds it."""

    conversations_table: str = Field(
        default="conversations",
        description="NocoDB table id or title (or export file stem) holding conversations.",
    )
    messages_table: str = Field(
        default="messages",
        description="NocoDB table id or title (or export file stem) holding messages.",
    )
    conversation_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical conversation field -> source field, only where they differ.",
    )
    message_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical message field -> source field, only where they differ.",
    )
    role_names: dict[str, str] = Field(
        default_factory=dict,
        description="A message role as the source writes it -> user, assistant, system or "
        "tool (case-insensitive), beyond the common ones already known (human, gpt, ai, "
        "model, developer, function, ...).",
    )

    @field_validator("role_names")
    @classmethod
    def _roles_are_known(cls, names: dict[str, str]) -> dict[str, str]:
        names = {written: role.strip().lower() for written, role in names.items()}
        unknown = sorted({role for role in names.values() if role not in MESSAGE_ROLES})
        if unknown:
            raise ValueError(
                f"role_names maps to unknown role(s) {unknown}; known: {MESSAGE_ROLES}"
            )
        return names

    def role_map(self) -> dict[str, str]:
        """A role as written, stripped and in lower case -> the pipeline's role."""
        custom = {written.strip().lower(): role for written, role in self.role_names.items()}
        return ROLE_ALIASES | custom

    def table(self, kind: TableKind) -> str:
        return self.conversations_table if kind == "conversations" else self.messages_table

    def field_map(self, kind: TableKind) -> dict[str, str]:
        """Canonical name -> source name for every canonical field of the table."""
        overrides = self.conversation_fields if kind == "conversations" else self.message_fields
        unknown = set(overrides) - set(CANONICAL_FIELDS[kind])
        if unknown:
            raise ValueError(
                f"Unknown canonical {kind} field(s) in the source mapping: {sorted(unknown)}; "
                f"known: {list(CANONICAL_FIELDS[kind])}"
            )
        return {name: overrides.get(name, name) for name in CANONICAL_FIELDS[kind]}

    def source_field(self, kind: TableKind, canonical: str) -> str:
        return self.field_map(kind)[canonical]
