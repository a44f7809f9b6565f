"""The deployment's privacy policy: how text and user ids are anonymized before they reach an
analytics table, which tables are restricted, how long each table keeps its days."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Literal

import polars as pl
from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from analytics_assets import tables
from analytics_assets.privacy.keys import load_pseudonym_key
from analytics_assets.privacy.pii import PATTERNS, anonymize, keyed_digest, pseudonymize_id
from analytics_assets.privacy.records import (
    anonymize_records,
    pseudonymize_user_field,
    record_texts,
)
from analytics_assets.settings import TEXT_POLICIES

TextPolicy = Literal["redact", "pseudonymize", "keep"]

# The free-text columns of each table that holds text (asset name = its lake table; its
# MongoDB collection is given in storage/placement.py), and the label columns a person can
# type into. Every other table holds only ids, labels derived from these, and numbers.
TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    # `model` and `channel` are labels a system writes, but a source field anyone can type
    # into: a channel named after an agent's e-mail address reached the reports, the API and
    # MongoDB raw. Scanned like text; real model and channel names hold nothing it finds.
    tables.CONVERSATION_MESSAGES: ("content", "model"),
    tables.CONVERSATION_HEADERS: ("model", "channel"),
    tables.CONVERSATION_TRANSLATIONS: ("text", "source_text"),
    # A reason quotes the value it could not read ("invalid feedback '…'"),
    # which can be anything a person typed into a mapped field.
    tables.PROCESSING_ERRORS: ("record", "reason"),
    tables.TRANSLATION_ERRORS: ("record",),
}
# Columns of labels (few distinct values in many rows): each distinct value is scanned once.
LABEL_COLUMNS = frozenset(
    {
        (tables.CONVERSATION_MESSAGES, "model"),
        (tables.CONVERSATION_HEADERS, "model"),
        (tables.CONVERSATION_HEADERS, "channel"),
    }
)
# Text columns that hold a record as JSON: searched and anonymized in the values the record
# holds (`privacy/records.py`), not in its JSON text, where a value after a line break is
# glued to the escape's letter.
JSON_RECORD_COLUMNS = frozenset(
    {(tables.PROCESSING_ERRORS, "record"), (tables.TRANSLATION_ERRORS, "record")}
)


def searchable_texts(table: str, column: str, values: pl.Series) -> pl.Series:
    """What a PII search reads of `values`, a text column of `table`."""
    return record_texts(values) if (table, column) in JSON_RECORD_COLUMNS else values


# Restricted by design, whatever the deployment says: the raw records as the source gave them,
# and the user-id mapping. They are never served and are the only tables that may hold raw
# PII; everything else is an analytics table.
RESTRICTED_TABLES = (tables.NOCODB_RAW_PAGES, tables.USER_PSEUDONYMS)


def _anonymize_labels(
    labels: pl.Series, key: bytes | None, kinds: tuple[str, ...]
) -> tuple[pl.Series, Counter]:
    """`anonymize` of each distinct value once (a day's 200,000 messages name a handful of
    models: 0.3 s scanned row by row), its findings counted once per row that holds it."""
    counts = labels.drop_nulls().value_counts()
    if counts.is_empty():
        return labels, Counter()
    distinct = counts[labels.name]
    anonymized, found = anonymize(distinct, key=key, kinds=kinds)
    if not found:
        return labels, found
    # Counted per row: each changed value (rare: a label holds PII only where someone typed
    # it in) is scanned once more alone, its findings times the rows that hold it.
    found = Counter()
    for value, after, rows in zip(distinct, anonymized, counts["count"], strict=True):
        if after != value:
            for kind, number in anonymize(pl.Series([value]), key=key, kinds=kinds)[1].items():
                found[kind] += number * rows
    mapping = dict(zip(distinct.to_list(), anonymized.to_list(), strict=True))
    return labels.replace_strict(mapping, default=None), found


class PrivacyResource(ConfigurableResource):
    """`redact` (the default): typed placeholders such as `<EMAIL>`; `pseudonymize`: keyed
    HMAC tokens such as `<EMAIL:3fa9…>`, the same value always the same token; `keep`: the
    raw text, refused unless the deployment lists the table in `restricted_tables`.
    Categorization and translation read `conversation_messages`, so they see its policy's
    text: anonymized unless a restricted deployment keeps it."""

    default_policy: TextPolicy = Field(
        default="redact", description="The text policy of every table not in `policies`."
    )
    # Dagster config has no Literal inside a dict: values are checked in policy_for.
    policies: dict[str, str] = Field(
        default_factory=dict,
        description="Text policy per table, e.g. {'conversation_messages': 'pseudonymize'}.",
    )
    restricted_tables: list[str] = Field(
        default_factory=list,
        description="Analytics tables this deployment restricts (access-controlled, never "
        "served); only these may `keep` raw text.",
    )
    pseudonym_key: str | None = Field(
        default=None, description="HMAC key for pseudonyms (PRIVACY_PSEUDONYM_KEY, an EnvVar)."
    )
    pseudonym_key_file: str | None = Field(
        default=None,
        description="A file holding the key, created with a random key when missing (the "
        "local deployment's default, so the key never appears in the resource's config).",
    )
    keep_user_mapping: bool = Field(
        default=False,
        description="Keep `user_pseudonyms` (pseudonym -> user id), a restricted table, for "
        "deployments that must answer 'which user is this'.",
    )
    retention_days: dict[str, int] = Field(
        default_factory=dict,
        description="Days each table keeps, e.g. {'conversation_messages': 90}; a table not "
        "listed keeps every day.",
    )
    types: list[str] = Field(
        default_factory=lambda: list(PATTERNS), description="PII types to anonymize."
    )

    # -- keys --------------------------------------------------------------------------------

    def key(self) -> bytes:
        # Outside a run (the CLI, the API) an EnvVar is still unresolved.
        configured = self.pseudonym_key
        if isinstance(configured, EnvVar):
            configured = configured.get_value()
        return load_pseudonym_key(configured, self.pseudonym_key_file)

    def pseudonym(self, user_id: str) -> str:
        return pseudonymize_id(user_id, self.key())

    def pseudonymizer(self) -> Callable[[str], str]:
        """`pseudonym` with the key read once, for many ids."""
        key = self.key()
        return lambda user_id: pseudonymize_id(user_id, key)

    def digester(self) -> Callable[[str, str], str]:
        """Keyed digests under a label (erasure tombstones, audit subjects), key read once."""
        key = self.key()
        return lambda label, value: keyed_digest(label, value, key)

    # -- text --------------------------------------------------------------------------------

    def policy_for(self, table: str) -> TextPolicy:
        policy = self.policies.get(table, self.default_policy)
        if policy not in TEXT_POLICIES:
            raise ValueError(f"policy of {table} must be one of {TEXT_POLICIES}, got {policy!r}")
        if policy == "keep" and table not in (*RESTRICTED_TABLES, *self.restricted_tables):
            raise ValueError(
                f"`keep` leaves raw PII in {table}: list it in restricted_tables if this "
                "deployment really restricts it, or choose redact/pseudonymize."
            )
        return policy

    def redacted_types(self, table: str) -> tuple[str, ...]:
        """The PII types that must not appear raw in `table` (none where it keeps text)."""
        return () if self.policy_for(table) == "keep" else tuple(self.types)

    def anonymize_table(self, table: str, frame: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
        """`frame` with the table's text columns anonymized under its policy, and the
        findings counted by type."""
        policy = self.policy_for(table)
        columns = [c for c in TEXT_COLUMNS.get(table, ()) if c in frame.columns]
        if policy == "keep" or frame.is_empty() or not columns:
            return frame, {}
        key = self.key() if policy == "pseudonymize" else None
        counts: Counter = Counter()
        replaced = []
        for column in columns:
            if (table, column) in JSON_RECORD_COLUMNS:
                text, found = anonymize_records(frame[column], key=key, kinds=tuple(self.types))
            elif (table, column) in LABEL_COLUMNS:
                text, found = _anonymize_labels(frame[column], key, tuple(self.types))
            else:
                text, found = anonymize(frame[column], key=key, kinds=tuple(self.types))
            replaced.append(text.alias(column))
            counts += found
        return frame.with_columns(replaced), dict(counts)

    # -- users -------------------------------------------------------------------------------

    def pseudonymize_users(self, frame: pl.DataFrame, column: str = "user_id") -> pl.DataFrame:
        """`column` replaced by its pseudonyms (each distinct id hashed once)."""
        if frame.is_empty() or column not in frame.columns:
            return frame
        pseudonym = self.pseudonymizer()
        distinct = frame[column].drop_nulls().unique()
        mapping = dict(zip(distinct, (pseudonym(v) for v in distinct), strict=True))
        return frame.with_columns(pl.col(column).replace_strict(mapping, default=None))

    def user_mapping(self, headers: pl.DataFrame) -> pl.DataFrame:
        """pseudonym -> user id per day, for the restricted `user_pseudonyms` table."""
        pairs = headers.select("day", "user_id").drop_nulls().unique()
        mapping = pairs.with_columns(pl.col("user_id").alias("user_pseudonym"))
        return self.pseudonymize_users(mapping, "user_pseudonym").sort("day", "user_pseudonym")

    def pseudonymize_records(self, errors: pl.DataFrame, user_field: str) -> pl.DataFrame:
        """Rejected records keep their JSON for debugging, with the user id field (the
        source's name for it) replaced by its pseudonym whatever value it holds (a number
        from a Number column too), the same pseudonym as the conversation's."""
        if errors.is_empty():
            return errors
        return errors.with_columns(
            pseudonymize_user_field(errors["record"], user_field, self.pseudonymizer())
        )
