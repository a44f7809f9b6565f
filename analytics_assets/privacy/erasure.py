"""Right to erasure: every row and document of one user, found by their pseudonym, removed
from the lake and MongoDB; tombstones so a later pull does not bring the raw records back;
an audit record that says who asked, when, and how much went, without the erased data.

The reports are not edited here: they are aggregates, so the days, weeks and months they
cover are rebuilt from what remains (`ErasureResult.reports_to_rebuild`).

A request (`submit_request`) keeps who is to be erased in MongoDB under a random id until
the erasure is done: the job is given only that id, so the subject never enters Dagster's run
config or event log, which no erasure can reach.

An erasure that fails halfway resumes: before it deletes anything it writes into its request
what it found (the conversations and the days), so a second attempt still knows what the
first one already deleted the traces of. It tombstones the raw records first,
deletes from MongoDB next and rewrites the lake last, the raw table at the very end (it is
where a user's conversations are found from their raw id).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
from pymongo.database import Database

from analytics_assets import tables
from analytics_assets.keys import joined_key_expr
from analytics_assets.privacy.pii import USER_PSEUDONYM_PATTERN, anonymize
from analytics_assets.sources.schema import SourceSchema
from analytics_assets.storage import day_index
from analytics_assets.storage.collections import COLLECTIONS
from analytics_assets.storage.lake import Lake
from analytics_assets.transforms.records import cleaned_field

RAW_TABLE = tables.NOCODB_RAW_PAGES
# Aggregates over many users: rebuilt, never filtered (and their `user_ids` go with the rebuild).
REPORT_TABLES = (tables.DAILY_REPORT, tables.WEEKLY_REPORT, tables.MONTHLY_REPORT)
# Tombstones: one file per erasure pass under the folder, never rewritten, so two erasures
# at once cannot lose each other's (a shared file read, added to and written back could).
# The single file is where earlier versions kept them all; it is still read.
TOMBSTONES = "_privacy/erased_records.parquet"
TOMBSTONE_FOLDER = "_privacy/erased_records"
AUDIT_COLLECTION = "privacy_audit"
# Pending erasure requests: the subject's pseudonym, until their erasure completes.
REQUESTS_COLLECTION = "privacy_erasure_requests"
REQUEST_ID_PATTERN = r"^[0-9a-f]{32}$"
# Kept apart from the analytics pseudonyms: an audit subject cannot be joined with any table.
AUDIT_LABEL = "erasure-subject"
TOMBSTONE_LABEL = "erased-record"
_IN_CHUNK = 500


@dataclass
class ErasureResult:
    conversations: int = 0
    lake_rows: dict[str, int] = field(default_factory=dict)
    mongo_documents: dict[str, int] = field(default_factory=dict)
    raw_records: int = 0
    changed_days: set[date] = field(default_factory=set)
    reports_to_rebuild: dict[str, list[str]] = field(default_factory=dict)
    # An earlier attempt of the same request found (and may have deleted) something.
    resumed: bool = False

    @property
    def removed_anything(self) -> bool:
        return bool(self.raw_records or self.resumed or any(self.lake_rows.values())
                    or any(self.mongo_documents.values()))  # fmt: skip


# Passes of finding what to erase again (after holding the days; after erasing).
MAX_PASSES = 3


class _Holding:
    """The days an erasure holds, all taken together: when more are wanted, the ones held
    are given back and the union taken at once. Holding some while waiting for others could
    deadlock with another erasure, or keep today's sync waiting on a long backfill."""

    def __init__(self, hold_days: Callable[[list[date]], AbstractContextManager] | None):
        self.hold_days = hold_days
        self.held: set[date] = set()
        self.stack: ExitStack | None = None

    def take(self, days: set[date]) -> bool:
        """Holds `days` too; whether that took new days (what they hold may have changed)."""
        if self.hold_days is None or days <= self.held:
            return False
        self.release()
        wanted = self.held | days
        stack = ExitStack()
        stack.enter_context(self.hold_days(sorted(wanted)))
        self.stack, self.held = stack, wanted
        return True

    def release(self) -> None:
        if self.stack is not None:
            self.stack.close()
            self.stack = None


def _all_days(plan: ErasurePlan) -> set[date]:
    return {day for days in plan.days_by_table.values() for day in days}


def _add_counts(total: dict[str, int], more: dict[str, int]) -> None:
    for name, count in more.items():
        total[name] = total.get(name, 0) + count


@dataclass
class ErasurePlan:
    """What an erasure removes: found before anything is deleted, and kept in the request
    so that an attempt after a failure still knows what the first one found.

    The raw records' ids are not kept: they are tombstoned before anything is deleted, so
    each one is tombstoned already or still in the raw table, where the next attempt finds
    it (and a request holds no list of record ids in clear, which tombstones avoid too)."""

    conversation_ids: set[str] = field(default_factory=set)
    # `<table>:<NocoDB Id, else key>` of the raw records found now, for the tombstones.
    raw_identities: set[str] = field(default_factory=set)
    # How many raw records earlier attempts tombstoned.
    raw_records_before: int = 0
    # The days whose analytics rows change: their reports are rebuilt.
    days: set[date] = field(default_factory=set)
    # Per lake table, the days that hold the user's rows now.
    days_by_table: dict[str, list[date]] = field(default_factory=dict)

    def merged(self, remembered: dict[str, Any]) -> ErasurePlan:
        return ErasurePlan(
            conversation_ids=self.conversation_ids | set(remembered.get("conversation_ids", [])),
            raw_identities=self.raw_identities,
            raw_records_before=int(remembered.get("raw_records_tombstoned", 0)),
            days=self.days | {date.fromisoformat(d) for d in remembered.get("days", [])},
            days_by_table=self.days_by_table,
        )

    def to_document(self, raw_records_tombstoned: int | None = None) -> dict[str, Any]:
        return {
            "conversation_ids": sorted(self.conversation_ids),
            # ISO text: the embedded MongoDB server reads dates written with `$set` as text.
            "days": sorted(day.isoformat() for day in self.days),
            "raw_records_tombstoned": self.raw_records_before
            if raw_records_tombstoned is None
            else raw_records_tombstoned,
        }


def _json_field(name: str) -> pl.Expr:
    # Bracket notation: a team's column titles may hold spaces ("User Id").
    quoted = name.replace("\\", "\\\\").replace("'", "\\'")
    return pl.col("record").str.json_path_match(f"$['{quoted}']")


def _raw_identity(schema: SourceSchema) -> pl.Expr:
    """A raw record's identity for tombstones: its NocoDB Id, else its key. A message's key
    is its id within its conversation: a source numbering messages per conversation has
    message 1 in every one, and by the id alone erasing one user's message 1 dropped every
    other user's message 1 from each later pull (an export without NocoDB's Id column)."""
    message_key = joined_key_expr(
        _json_field(schema.source_field("messages", "conversation_id")),
        _json_field(schema.source_field("messages", "message_id")),
    )
    key = (
        pl.when(pl.col("table") == "conversations")
        .then(_json_field(schema.source_field("conversations", "conversation_id")))
        .otherwise(message_key)
    )
    return pl.concat_str([pl.col("table"), pl.lit(":"), pl.coalesce("record_id", key)])


def _raw_conversation_id(schema: SourceSchema) -> pl.Expr:
    return (
        pl.when(pl.col("table") == "conversations")
        .then(_json_field(schema.source_field("conversations", "conversation_id")))
        .otherwise(_json_field(schema.source_field("messages", "conversation_id")))
    )


class Eraser:
    """One user's erasure over a lake and a MongoDB database."""

    def __init__(
        self,
        lake: Lake,
        db: Database,
        *,
        pseudonym_of: Callable[[str], str],
        digest: Callable[[str, str], str],
        schema: SourceSchema,
    ):
        self.lake = lake
        self.db = db
        self.pseudonym_of = pseudonym_of
        self.digest = digest
        self.schema = schema
        self._raw_ids_of: dict[str, list[str]] = {}
        self._confirm_days: Callable[[list[date]], None] | None = None

    # -- finding ---------------------------------------------------------------------------

    def _tables_with_days(self) -> list[str]:
        """The lake's tables that hold a day: retention can leave a table's folder with no
        day in it, which scans as a frame without columns (the erasure failed on it)."""
        return [table for table in self.lake.tables() if self.lake.days_present(table)]

    def _raw_user_matches(self, pseudonym: str) -> pl.Expr:
        """Conversation records whose raw user id has this pseudonym (the raw table is the
        only one that holds raw ids; each distinct id is hashed once)."""
        user_field = self.schema.source_field("conversations", "user_id")
        if pseudonym not in self._raw_ids_of:
            self._raw_ids_of[pseudonym] = self._raw_ids(pseudonym, user_field)
        return (pl.col("table") == "conversations") & _json_field(user_field).is_in(
            self._raw_ids_of[pseudonym]
        )

    def _raw_ids(self, pseudonym: str, user_field: str) -> list[str]:
        raw_users = (
            self.lake.scan_all(RAW_TABLE)
            .filter(pl.col("table") == "conversations")
            .select(_json_field(user_field).alias("user"))
            .drop_nulls()
            .unique()
            .collect()["user"]
            if RAW_TABLE in self._tables_with_days()
            else pl.Series("user", [], pl.String())
        )
        # Compared as ingestion stored them: a raw " user-7 " is the user "user-7".
        return [
            user
            for user in raw_users
            if (cleaned := cleaned_field(user)) is not None
            and self.pseudonym_of(cleaned) == pseudonym
        ]

    def user_ids(self, pseudonym: str) -> list[str]:
        """What the user may be called in a table: the pseudonym, and the source's ids found
        in the raw table (days built before pseudonyms were introduced still hold those)."""
        self._raw_user_matches(pseudonym)
        return [pseudonym, *self._raw_ids_of[pseudonym]]

    def conversation_ids(self, pseudonym: str) -> set[str]:
        """The user's conversations, wherever any table knows them from."""
        ids: set[str] = set()
        present = set(self._tables_with_days())
        names = self.user_ids(pseudonym)
        for table in (
            tables.CONVERSATION_HEADERS,
            tables.CONVERSATIONS,
            tables.CONVERSATION_ANALYTICS,
        ):
            if table in present:
                found = (
                    self.lake.scan_all(table)
                    .filter(pl.col("user_id").is_in(names))
                    .select("conversation_id")
                    .collect()
                )
                ids.update(found["conversation_id"].drop_nulls())
        if RAW_TABLE in present:
            found = (
                self.lake.scan_all(RAW_TABLE)
                .filter(self._raw_user_matches(pseudonym))
                .select(_raw_conversation_id(self.schema).alias("conversation_id"))
                .collect()
            )
            ids.update(found["conversation_id"].drop_nulls())
        for document in self.db["conversation_analytics"].find(
            {"user_id": {"$in": names}}, projection={"conversation_id": True}
        ):
            ids.add(document["conversation_id"])
        return ids

    # -- removing --------------------------------------------------------------------------

    def _match(self, table: str, columns: set[str], pseudonym: str, ids: list[str]) -> pl.Expr:
        if table == RAW_TABLE:
            return _raw_conversation_id(self.schema).is_in(ids) | self._raw_user_matches(pseudonym)
        conditions = []
        if "user_id" in columns:
            conditions.append(pl.col("user_id").is_in(self.user_ids(pseudonym)))
        if "user_pseudonym" in columns:
            conditions.append(pl.col("user_pseudonym") == pseudonym)
        if "conversation_id" in columns:
            conditions.append(pl.col("conversation_id").is_in(ids))
        if "record" in columns:  # a rejected record keeps its (pseudonymized) user id
            conditions.append(pl.col("record").str.contains(pseudonym, literal=True))
        return pl.any_horizontal(conditions).fill_null(False) if conditions else pl.lit(False)

    def _confirm(self, day: date) -> None:
        """Raises (LeaseLostError) before a day whose lease this erasure lost is rewritten:
        another run may be writing it."""
        if self._confirm_days is not None:
            self._confirm_days([day])

    def _their_texts(self, ids: list[str]) -> list[str]:
        """What the user wrote, as the analytics tables hold it (anonymized)."""
        if tables.CONVERSATION_MESSAGES not in self._tables_with_days() or not ids:
            return []
        texts = (
            self.lake.scan_all(tables.CONVERSATION_MESSAGES)
            .filter(pl.col("conversation_id").is_in(ids))
            .select("content")
            .drop_nulls()
            .unique()
            .collect()
        )
        return texts["content"].to_list()

    def _scrub_examples(self, table: str, texts: list[str], result: ErasureResult) -> None:
        """Clusters quote a few member texts as examples: the user's leave the list."""
        quoted = pl.col("examples").list.eval(pl.element().is_in(texts)).list.any()
        days = self.lake.scan_all(table).filter(quoted).select("day").unique().collect()
        scrubbed = 0
        for day in sorted(days["day"]):
            frame = self.lake.scan_days(table, [day]).collect()
            scrubbed += frame.filter(quoted).height
            frame = frame.with_columns(
                pl.col("examples").list.eval(pl.element().filter(~pl.element().is_in(texts)))
            )
            if "example" in frame.columns:
                frame = frame.with_columns(pl.col("examples").list.first().alias("example"))
            # Not confirmed: the discovery job that writes these days takes no day leases,
            # so the erasure holds none of them either.
            self.lake.write_day(table, day, frame)
        result.lake_rows[f"{table} (examples scrubbed)"] = scrubbed

    def _lake_tables(self) -> list[tuple[str, set[str]]]:
        """The lake tables an erasure rewrites, with their columns, in the order it rewrites
        them: those quoting examples first (they are scrubbed by the user's texts, read
        from `conversation_messages`), the raw table last (a user's conversations are found
        from their raw id there)."""
        found = []
        for table in self._tables_with_days():
            if table in REPORT_TABLES:
                continue
            columns = set(self.lake.scan_all(table).collect_schema().names())
            if "day" in columns:
                found.append((table, columns))
        return sorted(found, key=lambda item: ("examples" not in item[1], item[0] == RAW_TABLE))

    def _find(self, pseudonym: str, known_ids: set[str]) -> ErasurePlan:
        """Everything of the user's that the lake and MongoDB hold now, `known_ids` (their
        conversations an earlier attempt found) included; deletes nothing."""
        ids = sorted(self.conversation_ids(pseudonym) | known_ids)
        plan = ErasurePlan(conversation_ids=set(ids))
        for table, columns in self._lake_tables():
            if "examples" in columns:
                continue  # scrubbed, not removed: no report changes
            match = self._match(table, columns, pseudonym, ids)
            matched = self.lake.scan_all(table).filter(match)
            days = matched.select("day").unique().collect()["day"].to_list()
            plan.days_by_table[table] = sorted(days)
            if table == RAW_TABLE:
                identities = matched.select(_raw_identity(self.schema)).collect().to_series()
                plan.raw_identities.update(identities.drop_nulls())
            else:
                plan.days.update(days)
        return plan

    def _erase_lake(self, pseudonym: str, plan: ErasurePlan, result: ErasureResult) -> None:
        """Rewrites only the days that hold the user's rows."""
        ids = sorted(plan.conversation_ids)
        texts = self._their_texts(ids)
        for table, columns in self._lake_tables():
            if "examples" in columns:
                self._scrub_examples(table, texts, result)
                continue
            removed = 0
            for day in plan.days_by_table.get(table, []):
                frame = self.lake.scan_days(table, [day]).collect()
                # By the day's own columns: a day written before a release added one (a
                # `user_pseudonym`) lacks what the table's merged schema has.
                match = self._match(table, set(frame.columns), pseudonym, ids)
                mask = frame.select(match.alias("erase"))["erase"]
                self._confirm(day)
                self.lake.write_day(table, day, frame.filter(~mask))
                removed += int(mask.sum())
            result.lake_rows[table] = removed

    def _erase_mongo(self, pseudonym: str, ids: list[str], result: ErasureResult) -> None:
        for name, spec in COLLECTIONS.items():
            if name == "analytics_reports":
                continue  # rebuilt from what remains
            properties = spec.json_schema["properties"]
            removed = 0
            if "user_id" in properties:
                removed += (
                    self.db[name]
                    .delete_many({"user_id": {"$in": self.user_ids(pseudonym)}})
                    .deleted_count
                )
            if "conversation_id" in properties:
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start : start + _IN_CHUNK]
                    removed += (
                        self.db[name].delete_many({"conversation_id": {"$in": chunk}}).deleted_count
                    )
            if name == tables.PROCESSING_ERRORS:
                removed += self._erase_rejected_records(name, pseudonym)
            result.mongo_documents[name] = removed
        result.mongo_documents[day_index.DAY_INDEX_COLLECTION] = day_index.forget(self.db, ids)

    def _erase_rejected_records(self, name: str, pseudonym: str) -> int:
        """A rejected record is mirrored whole, and it keeps its (pseudonymized) user id
        where it has no conversation id to match (a conversation rejected for a blank one):
        the lake's rows go by their record, so the documents must too. Read in Python, not
        with a server-side `$regex`: the embedded server scans either way, and rejections
        are a few records a day."""
        their_ids = [
            document["_id"]
            for document in self.db[name].find({}, projection={"record": True})
            if isinstance(document.get("record"), str) and pseudonym in document["record"]
        ]
        removed = 0
        for start in range(0, len(their_ids), _IN_CHUNK):
            chunk = their_ids[start : start + _IN_CHUNK]
            removed += self.db[name].delete_many({"_id": {"$in": chunk}}).deleted_count
        return removed

    def _add_tombstones(self, identities: list[str]) -> int:
        """Keyed digests of the removed raw records: a pull drops them, the reconciliation
        does not count them missing. Only digests: the list names no record or user.
        Returns how many were not tombstoned already."""
        if not identities:
            return 0
        known = tombstones(self.lake)
        digests = {tombstone_digest(self.digest, identity) for identity in identities} - known
        if not digests:
            return 0
        new = pl.DataFrame(
            {"record_digest": sorted(digests), "erased_at": [datetime.now(UTC)] * len(digests)}
        )
        self.lake.write_file(f"{TOMBSTONE_FOLDER}/{uuid.uuid4().hex}.parquet", new)
        compact_tombstones(self.lake)
        return new.height

    def _reports_to_rebuild(self, days: set[date]) -> dict[str, list[str]]:
        """The report partitions built on the changed days: each day and the day after (it
        compares with the day before), their weeks and months, and the week and month after
        (they compare with the period before). Only periods the lake already holds."""
        touched = days | {day + timedelta(days=1) for day in days}
        daily = set(self.lake.days_present(tables.DAILY_REPORT)) & touched
        weeks = {day - timedelta(days=day.weekday()) for day in days}
        weeks |= {week + timedelta(days=7) for week in weeks}
        months = {day.replace(day=1) for day in days}
        months |= {(month + timedelta(days=32)).replace(day=1) for month in months}
        return {
            tables.DAILY_REPORT: sorted(d.isoformat() for d in daily),
            tables.WEEKLY_REPORT: sorted(
                w.isoformat() for w in set(self.lake.days_present(tables.WEEKLY_REPORT)) & weeks
            ),
            tables.MONTHLY_REPORT: sorted(
                m.isoformat() for m in set(self.lake.days_present(tables.MONTHLY_REPORT)) & months
            ),
        }

    def _remembered(self, request_id: str | None) -> dict[str, Any]:
        if request_id is None:
            return {}
        document = self.db[REQUESTS_COLLECTION].find_one(
            {"_id": request_id}, projection={"found": True}
        )
        return (document or {}).get("found") or {}

    def _remember(self, request_id: str | None, found: dict[str, Any]) -> None:
        if request_id is not None:
            self.db[REQUESTS_COLLECTION].update_one({"_id": request_id}, {"$set": {"found": found}})

    def erase(
        self,
        pseudonym: str,
        request_id: str | None = None,
        hold_days: Callable[[list[date]], AbstractContextManager] | None = None,
        confirm_days: Callable[[list[date]], None] | None = None,
    ) -> ErasureResult:
        """Idempotent: a second erasure of the same user finds nothing and changes nothing.
        Given its request, an erasure that failed halfway resumes where it stopped: what it
        found is written into the request before anything is deleted.

        `hold_days` keeps the runs that write days (their day leases) off the days it
        rewrites, while it does: all of them at once, never some while waiting for others
        (a new day found gives back and takes the union). `confirm_days` raises before a day
        is rewritten whose lease was lost."""
        result = ErasureResult()
        remembered = self._remembered(request_id)
        known = set(remembered.get("conversation_ids", []))
        holding = _Holding(hold_days)
        self._confirm_days = confirm_days if hold_days is not None else None
        try:
            found = self._find(pseudonym, known)
            # Found again once the days are held: a day run that was writing one of them has
            # finished, and whatever it wrote is found too (a new day is held too).
            for _ in range(MAX_PASSES):
                if not holding.take(_all_days(found)):
                    break
                found = self._find(pseudonym, known)
            plan = found.merged(remembered)
            self._remember(request_id, plan.to_document())
            result.resumed = bool(remembered) and any(remembered.values())
            result.raw_records = plan.raw_records_before + self._add_tombstones(
                sorted(plan.raw_identities)
            )
            self._add_tombstones(_conversation_identities(plan.conversation_ids))
            self._remember(request_id, plan.to_document(result.raw_records))
            self._erase_mongo(pseudonym, sorted(plan.conversation_ids), result)
            self._erase_lake(pseudonym, plan, result)
            # Until nothing is left: a run that holds no lease (a re-execution, the
            # across-midnight rebuild) may have written rows back to the lake or documents
            # back to MongoDB meanwhile. Each pass adds to the counts.
            for _ in range(MAX_PASSES):
                left = self._find(pseudonym, set(plan.conversation_ids))
                again = ErasureResult()
                self._erase_mongo(pseudonym, sorted(left.conversation_ids), again)
                _add_counts(result.mongo_documents, again.mongo_documents)
                if not any(left.days_by_table.values()):
                    break
                if holding.take(_all_days(left)):
                    left = self._find(pseudonym, set(plan.conversation_ids))
                result.raw_records += self._add_tombstones(sorted(left.raw_identities))
                self._add_tombstones(_conversation_identities(left.conversation_ids))
                self._erase_lake(pseudonym, left, again)
                _add_counts(result.lake_rows, again.lake_rows)
                plan.days |= left.days
                plan.conversation_ids |= left.conversation_ids
        finally:
            holding.release()
            self._confirm_days = None
        result.conversations = len(plan.conversation_ids)
        result.changed_days = plan.days
        result.reports_to_rebuild = self._reports_to_rebuild(plan.days)
        return result

    # -- audit -----------------------------------------------------------------------------

    def audit(
        self,
        erasure_id: str,
        pseudonym: str,
        result: ErasureResult,
        *,
        requested_by: str,
        reason: str,
        started_at: datetime,
    ) -> dict[str, Any]:
        """The audit record: who, when, what and how much; the subject only as a digest
        under its own label, which no table holds."""
        record = {
            "_id": erasure_id,
            "subject_digest": self.digest(AUDIT_LABEL, pseudonym),
            "requested_by": requested_by,
            "reason": _without_pii(reason),
            "started_at": started_at,
            "finished_at": datetime.now(UTC),
            "outcome": "erased" if result.removed_anything else "nothing to erase",
            "conversations": result.conversations,
            "lake_rows_removed": result.lake_rows,
            "mongo_documents_removed": result.mongo_documents,
            "raw_records_tombstoned": result.raw_records,
            "reports_to_rebuild": result.reports_to_rebuild,
        }
        self.db[AUDIT_COLLECTION].update_one(
            {"_id": erasure_id}, {"$set": {k: v for k, v in record.items() if k != "_id"}},
            upsert=True,
        )  # fmt: skip
        return record


def _without_pii(reason: str) -> str:
    """The audit keeps why, not who: a reason that quotes the user's address or number
    (`"erase jane@example.com, ticket 17"`) is kept redacted, as the analytics tables are."""
    return anonymize(pl.Series([reason or ""]))[0][0]


@dataclass(frozen=True)
class ErasureRequest:
    request_id: str
    user_pseudonym: str
    requested_by: str
    reason: str = ""


def submit_request(db: Database, user_pseudonym: str, *, requested_by: str,
                   reason: str = "") -> str:  # fmt: skip
    """Records an erasure request; returns its id (random, it says nothing of the user),
    the only thing the erasure job is given. A request still pending for the same user (one
    whose erasure failed) is returned instead, so the next attempt resumes it."""
    if not re.fullmatch(USER_PSEUDONYM_PATTERN, user_pseudonym):
        # The value is not repeated: it may be a raw user id given by mistake.
        raise ValueError(
            "An erasure request takes the user's pseudonym (u_ and 20 hex digits), not "
            "their id: `analytics-assets pseudonym <user id>` prints it."
        )
    pending = db[REQUESTS_COLLECTION].find_one(
        {"user_pseudonym": user_pseudonym}, projection={"_id": True}
    )
    if pending is not None:
        return pending["_id"]
    request_id = uuid.uuid4().hex
    db[REQUESTS_COLLECTION].insert_one(
        {
            "_id": request_id,
            "user_pseudonym": user_pseudonym,
            "requested_by": requested_by,
            "reason": _without_pii(reason),
            "requested_at": datetime.now(UTC),
        }
    )
    return request_id


def load_request(db: Database, request_id: str) -> ErasureRequest | None:
    """The pending request, or None (unknown, or already carried out and closed)."""
    document = db[REQUESTS_COLLECTION].find_one({"_id": request_id})
    if document is None:
        return None
    return ErasureRequest(
        request_id=request_id,
        user_pseudonym=document["user_pseudonym"],
        requested_by=document["requested_by"],
        reason=document.get("reason", ""),
    )


def close_request(db: Database, request_id: str) -> None:
    """Forgets the request (idempotent): once the erasure is done, only the audit record,
    which keeps the subject as a keyed digest, says it happened."""
    db[REQUESTS_COLLECTION].delete_one({"_id": request_id})


# A tombstone for each erased conversation too, beside its raw records': where retention had
# already removed a day's raw pages, the erasure found none of that day's records to
# tombstone, and a later pull of the day (NocoDB still holds them) brought the user back.
# The analytics tables keep the conversation ids longer than the raw pages keep records.
ERASED_CONVERSATION = "erased-conversation"


def _conversation_identities(conversation_ids: set[str]) -> list[str]:
    return sorted(f"{ERASED_CONVERSATION}:{cid}" for cid in conversation_ids)


def tombstone_digest(digest: Callable[[str, str], str], identity: str) -> str:
    """What a tombstone keeps of a raw record: a keyed digest of its identity,
    `<table>:<NocoDB Id, else key>` (as `_raw_identity` builds it)."""
    return digest(TOMBSTONE_LABEL, identity)


def is_tombstoned(
    erased: set[str], digest: Callable[[str, str], str], table: str, record_id: str
) -> bool:
    return tombstone_digest(digest, f"{table}:{record_id}") in erased


# Past this many tombstone files they are merged into one: every pull reads them all (on
# S3, a request each).
TOMBSTONE_FILES_MAX = 20


def compact_tombstones(lake: Lake) -> None:
    """Merges the tombstone files into one once there are more than `TOMBSTONE_FILES_MAX`:
    the merged file is written first, then only the files it merged are deleted, so a file
    another erasure writes meanwhile stays, and a tombstone is never without a file. (A
    reader that listed a merged file before it went lists again: `tombstones`.)"""
    files = lake.files_under(TOMBSTONE_FOLDER)
    if len(files) <= TOMBSTONE_FILES_MAX:
        return
    read = {name: lake.read_file(name) for name in files}
    frames = [frame for frame in read.values() if frame is not None]
    if not frames:  # merged meanwhile by another erasure
        return
    merged = pl.concat(frames).unique("record_digest", keep="first")
    lake.write_file(f"{TOMBSTONE_FOLDER}/{uuid.uuid4().hex}.parquet", merged)
    for name, frame in read.items():
        if frame is not None:
            lake.delete_file(name)


# Listings of the tombstone folder read again when a file listed was merged away meanwhile.
_TOMBSTONE_READS = 5


def tombstones(lake: Lake) -> set[str]:
    """The digests of every erased raw record. A file listed but gone when read was merged
    by a compaction, whose merged file is written before any is deleted: the folder is then
    listed and read again, so no tombstone is missed."""
    for _ in range(_TOMBSTONE_READS):
        found: set[str] = set()
        complete = True
        for relative in [TOMBSTONES, *lake.files_under(TOMBSTONE_FOLDER)]:
            frame = lake.read_file(relative)
            if frame is None and relative != TOMBSTONES:
                complete = False
                break
            if frame is not None:
                found.update(frame["record_digest"])
        if complete:
            return found
    raise RuntimeError(
        f"The erasure tombstones in {TOMBSTONE_FOLDER} kept changing while read; try again."
    )


def drop_tombstoned(
    raw: pl.DataFrame,
    lake: Lake,
    schema: SourceSchema,
    digester: Callable[[], Callable[[str, str], str]],
) -> tuple[pl.DataFrame, int]:
    """Raw records minus the erased ones (a pull after an erasure, while the source still
    holds them); how many were dropped. The key is read only when there are tombstones."""
    erased = tombstones(lake)
    if not erased or raw.is_empty():
        return raw, 0
    digest = digester()
    identities = raw.select(
        _raw_identity(schema).alias("record"),
        _raw_conversation_id(schema).alias("conversation"),
    )

    def erased_conversation(conversation_id: str | None) -> bool:
        # Named as the analytics tables name it (`validate_*` cleans ids so).
        cleaned = cleaned_field(conversation_id)
        identity = f"{ERASED_CONVERSATION}:{cleaned}"
        return cleaned is not None and tombstone_digest(digest, identity) in erased

    # Each conversation's digest once, not once per message of it.
    erased_conversations = {
        conversation
        for conversation in identities["conversation"].unique().to_list()
        if erased_conversation(conversation)
    }
    keep = [
        (record is None or tombstone_digest(digest, record) not in erased)
        and conversation not in erased_conversations
        for record, conversation in identities.iter_rows()
    ]
    kept = raw.filter(pl.Series(keep))
    return kept, raw.height - kept.height
