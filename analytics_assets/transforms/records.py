"""Raw records -> typed, validated, de-duplicated rows; every rejected record keeps its reason,
and so does a record kept with a wrong optional value left empty.

Pure polars: no Dagster, no I/O. Everything here is vectorized, except reading again, one by
one in Python, the few records polars' JSON decoder refuses (`_with_decodable_json`);
decoding the records' JSON is about half the time (`benchmarks/bench_messages.py`).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple, TypeVar

import polars as pl

from analytics_assets.keys import escaped_part_expr, joined_key_expr
from analytics_assets.sources.schema import (
    KEY_FIELD,
    MESSAGE_ROLES,
    REQUIRED_FIELDS,
    SYSTEM_FIELDS,
    SourceSchema,
    TableKind,
)
from analytics_assets.transforms.raw import lone_surrogates_as_nul
from analytics_assets.transforms.timestamps import TIMESTAMP_DTYPE, with_utc_timestamps

# The roles whose message may hold no text (`validate_messages`).
ROLES_WITHOUT_TEXT = ("assistant", "tool")
FEEDBACK_VALUES = ("up", "down")
RATING_RANGE = (1, 5)
# Above these a value is a bug or an attack, not a measurement. No model reads or writes a
# billion tokens in one message; a reply does not take a day. Bounded so, a day's sums stay
# far inside 64 bits: 9e18 tokens in two messages wrapped a conversation's total negative.
MAX_TOKENS = 1_000_000_000
MAX_LATENCY_MS = 24 * 60 * 60 * 1000
# An id is a key: of a MongoDB document, of a filter naming a day's keys, of every join. A
# source's ids are UUIDs or numbers; one of megabytes is an attack or a field mapped wrong,
# and a day of them made documents and filters over MongoDB's 16 MB.
MAX_ID_BYTES = 512

MESSAGE_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "conversation_id": pl.String(),
    "role": pl.String(),
    "content": pl.String(),
    "model": pl.String(),
    "created_at": TIMESTAMP_DTYPE,
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "latency_ms": pl.Float64(),
    "feedback": pl.String(),
    "source_created_at": TIMESTAMP_DTYPE,
    "source_updated_at": TIMESTAMP_DTYPE,
    "record_id": pl.String(),
    "day": pl.Date(),
}

CONVERSATION_HEADER_SCHEMA: dict[str, pl.DataType] = {
    "conversation_id": pl.String(),
    "user_id": pl.String(),
    "model": pl.String(),
    "channel": pl.String(),
    "started_at": TIMESTAMP_DTYPE,
    "rating": pl.Int8(),
    "source_created_at": TIMESTAMP_DTYPE,
    "source_updated_at": TIMESTAMP_DTYPE,
    "record_id": pl.String(),
    "day": pl.Date(),
}

ERROR_SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "table": pl.String(),
    "stage": pl.String(),
    "record_id": pl.String(),
    "key": pl.String(),
    # What identifies the rejected record: its NocoDB Id, else its key, else its content.
    "record_key": pl.String(),
    "conversation_id": pl.String(),
    "reason": pl.String(),
    "record": pl.String(),
}


# The reason's ending for an older copy of a record NocoDB holds twice: reported, but nothing
# was lost (the newest copy was kept), so the error rate leaves it out.
SUPERSEDED = "superseded by a newer copy"


def is_superseded(reason: pl.Expr) -> pl.Expr:
    return reason.str.ends_with(SUPERSEDED).fill_null(False)


# The reason's ending for a record kept with a value it holds wrong left empty (a rating of
# 7, a negative token count): the record is in the lake, so the error rate leaves it out
# too, but the reason and the record are in processing_errors like any other.
KEPT_WITHOUT_VALUE = "record kept, value left empty"
KEPT_WITHOUT_VALUES = "record kept, values left empty"


def is_kept_without_values(reason: pl.Expr) -> pl.Expr:
    return (
        reason.str.ends_with(KEPT_WITHOUT_VALUE) | reason.str.ends_with(KEPT_WITHOUT_VALUES)
    ).fill_null(False)


def is_lost(reason: pl.Expr) -> pl.Expr:
    """A processing_errors row for a record the lake does not hold: neither the older copy
    of a kept record nor a record kept without a value."""
    return ~(is_superseded(reason) | is_kept_without_values(reason))


Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def _copy_order(columns: list[str]) -> list[pl.Expr]:
    """What orders copies of one record oldest first (the last is the one kept): when
    NocoDB last wrote it, then its NocoDB Id; each only where the frame has it."""
    versions = [c for c in ("source_updated_at", "source_created_at") if c in columns]
    order = [pl.coalesce(versions)] if versions else []
    if "record_id" in columns:
        order.append(pl.col("record_id").cast(pl.Int64, strict=False))
    return order


def newest_copies(messages: Frame) -> Frame:
    """One row per message of messages read over several days, the newest copy (as
    validation picks it within a day), in their order. NocoDB may hold a message twice on
    two days (a re-delivery stamped after midnight): each day keeps its own copy, and a
    conversation read over D and D+1 counted the message twice. A message is its id within
    its conversation: another conversation's message with the same id on the next day is
    another message (validation reports such ids within a day; across two days one of them
    was dropped without a word).

    The copy keeps the first copy's `created_at`: the message was sent then, and the
    reports count it on that day. With the re-delivery's time, a user's question re-sent
    after midnight sorted after the reply to it, and the conversation ended unanswered, a
    minute longer."""
    names = messages.collect_schema().names()
    key = ["conversation_id", "message_id"] if "conversation_id" in names else ["message_id"]
    if isinstance(messages, pl.DataFrame) and (
        messages.height < 2 or not messages.select(pl.struct(key).is_duplicated().any()).item()
    ):
        return messages
    first_sent = [pl.col("created_at").min().over(key)] if "created_at" in names else []
    return (
        messages.with_row_index("_order")
        .with_columns(first_sent)
        .sort([*_copy_order(names), "_order"], nulls_last=False)
        .unique(key, keep="last")
        .sort("_order")
        .drop("_order")
    )


def messages_within_reach(messages: Frame, conversations: pl.DataFrame | pl.LazyFrame) -> Frame:
    """The messages of `conversations` (conversation_id, day) that a run of each one's own
    day reads: those of its start day and the next (the per-conversation assets' partition
    mapping). A range run reads every day of its range at once, so a conversation taken up
    again two days later counted those messages in a range backfill and not in a run of its
    day, and an unrelated rebuild of the day flipped its figures back. Messages without a
    `day` (a frame built by hand) are matched by conversation only."""
    if "day" not in messages.collect_schema().names():
        kept = messages.lazy().join(
            conversations.lazy().select("conversation_id").unique(), on="conversation_id",
            how="semi",
        )  # fmt: skip
    else:
        started = conversations.lazy().select("conversation_id", "day")
        reach = pl.concat([started, started.with_columns(pl.col("day").dt.offset_by("1d"))])
        kept = messages.lazy().join(reach.unique(), on=["conversation_id", "day"], how="semi")
    return kept if isinstance(messages, pl.LazyFrame) else kept.collect()


def carried_rows_digest(rows: Frame, conversations: pl.DataFrame, day: date) -> str:
    """A digest of what a build of `day` reads of the next day in `rows` (messages, message
    signals): the rows of the next day that belong to a conversation of `day` in
    `conversations` (conversation_id, day). Equal digests mean the next day was built again
    without a change to those rows, and `day` needs no rebuild for them. Every column but
    `day` counts, each row written as JSON with its columns in name order, the rows sorted:
    a frame read back from the lake gives the digest the build gave, whatever its column
    and row order. (Stable within one polars version; after an upgrade a digest that
    differs only asks for one rebuild too many.)"""
    started = conversations.lazy().filter(pl.col("day") == day).select("conversation_id")
    carried = (
        rows.lazy()
        .filter(pl.col("day") == day + timedelta(days=1))
        .join(started.unique(), on="conversation_id", how="semi")
    )
    names = sorted(name for name in carried.collect_schema().names() if name != "day")
    digest = hashlib.sha256("\x1f".join(names).encode())
    if not names:
        return digest.hexdigest()[:16]
    lines = (
        carried.select(pl.struct(names).struct.json_encode().alias("line"))
        .sort("line")
        .collect()
        .get_column("line")
    )
    for line in lines:
        digest.update(b"\x1e" + line.encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Validated:
    valid: pl.DataFrame
    rejected: pl.DataFrame
    # Records whose text lost control characters (see CONTROL_CHARACTERS).
    records_with_controls_removed: int = 0

    @property
    def records(self) -> int:
        """How many records were validated. A record kept with a wrong value left empty is
        in both frames: counted once (valid + rejected counted it twice, and the run's
        messages_per_second with it)."""
        kept = self.rejected.filter(is_kept_without_values(pl.col("reason"))).height
        return self.valid.height + self.rejected.height - kept


def empty_errors() -> pl.DataFrame:
    return pl.DataFrame(schema=ERROR_SCHEMA)


# Text kept exactly as written; every other field is stripped and "" counts as missing.
_VERBATIM_FIELDS = frozenset({"content"})

# C0 control characters other than tab, newline and carriage return: a NUL breaks MongoDB
# drivers and downstream CSV exports, and none of them carries meaning in chat text.
# An unpaired surrogate (half an emoji) decodes to NUL (`_with_decodable_json`), so removing
# NUL also removes those.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"
_CONTROL_CHARACTERS = re.compile(CONTROL_CHARACTERS)


def cleaned_field(value: str | None) -> str | None:
    """A field other than the text as validation stores it: control characters removed,
    stripped, blank as None. What an operator types (`erase-user " user-7 "`) must name the
    user as ingestion named them."""
    cleaned = _CONTROL_CHARACTERS.sub("", value or "").strip()
    return cleaned or None


def _decode(raw: pl.DataFrame, kind: TableKind, schema: SourceSchema) -> pl.DataFrame:
    """The table's raw rows with every canonical field as text in `_text_<field>`, in
    `_decode_problem` why a record could not be read (null where it could), and in
    `_value_problem` why an optional field's value could not be kept (a JSON array, NaN):
    the record is then kept without it."""
    field_map = schema.field_map(kind)
    source_fields = list(dict.fromkeys(field_map.values()))
    # NocoDB's own times order copies and date a record without event time: not optional.
    needed = {field_map[name] for name in (*REQUIRED_FIELDS[kind], *SYSTEM_FIELDS)}
    optional = frozenset(source_fields) - needed
    rows = raw.lazy().filter(pl.col("table") == kind).with_row_index("_row")
    # A JSON true or false in a field decodes as the text "true" (content `true`; every
    # conversation_id `false` one conversation): only Python tells them apart, so those
    # records are written again first, as the deep ones are. A key's quote is not escaped;
    # inside a string every quote is.
    fields = "|".join(pl.escape_regex(name) for name in source_fields)
    literal = f'(?:^|[^\\\\])"(?:{fields})"\\s*:\\s*(?:true|false)\\b'
    # Only a record at least that long can hold that many, and most records are short.
    deep = (
        rows.filter(pl.col("record").str.len_bytes() >= _DEEP_FROM)
        .filter(_openers(pl.col("record")) >= _DEEP_FROM)
        .select("_row")
        .collect()
        .to_series()
    )
    # The words first (a substring search), the pattern only where they are: the pattern
    # over every record cost as much as the whole validation.
    with_a_literal = (
        rows.filter(
            pl.col("record").str.contains("true", literal=True)
            | pl.col("record").str.contains("false", literal=True)
        )
        .select("_row", "record")
        .collect()
    )
    literal_rows = with_a_literal.filter(pl.col("record").str.contains(literal))["_row"]
    if literal_rows.len():
        deep = pl.concat([deep, literal_rows]).unique().sort()
    try:
        if deep.is_empty():
            decoded = _decode_rows(rows, field_map, source_fields, json_column="record")
            return decoded.with_columns(
                pl.lit(None, pl.String).alias("_decode_problem"),
                pl.lit(None, pl.String).alias("_value_problem"),
            )
        # Those alone are written again first (real text can hold that many brackets: a
        # pasted JSON document), and the day is decoded once, as a clean day is.
        rewrites = _Rewrites(rows.collect(), source_fields, optional)
        rewrites.rewrite(deep.to_list())
        return _decode_rows(rewrites.frame().lazy(), field_map, source_fields, json_column="_json")
    except _REFUSED:
        pass
    # A record polars' decoder refuses (below) fails the decode of the whole day: the day is
    # decoded again from `_json`, where every such record is written again.
    rewritten = _with_decodable_json(
        rows.collect(engine="streaming"), source_fields, deep.to_list(), optional
    )
    return _decode_rows(rewritten.lazy(), field_map, source_fields, json_column="_json")


# polars' decoder crashes the process (a segfault, not an error) on a record nested a few
# thousand levels deep when it decodes on worker threads, as the streaming engine does; at
# about 100,000 levels, on any thread. A record with this many brackets or braces, inside
# strings or not, is never given to it: Python reads it first (`_readable_json`), and at
# Python's own limit (about 1,000 levels) it is rejected.
_DEEP_FROM = 1_000


def _openers(record: pl.Expr) -> pl.Expr:
    return record.str.count_matches(r"[\[{]")


class _Rewrites:
    """A day's records as polars is to decode them (`_json`), the ones written again by
    `_readable_json`, why each of those could not be read (`_decode_problem`), and which
    of their optional fields' values could not be kept (`_value_problem`)."""

    def __init__(self, rows: pl.DataFrame, source_fields: list[str], optional: frozenset[str]):
        self.rows = rows
        self.records = rows.get_column("record")
        self.source_fields = source_fields
        self.optional = optional
        self.json = self.records.clone()
        self.problems: list[str | None] = [None] * self.records.len()
        self.value_problems: list[str | None] = [None] * self.records.len()

    def rewrite(self, positions: list[int]) -> None:
        if not positions:
            return
        rewritten = []
        for position, record in zip(positions, self.records.gather(positions), strict=True):
            text, self.problems[position], self.value_problems[position] = _readable_json(
                record, self.source_fields, self.optional
            )
            rewritten.append(text)
        self.json = self.json.scatter(positions, pl.Series(rewritten, dtype=pl.String))

    def keep_no_field(self, positions: list[int], problem: str) -> None:
        if not positions:
            return
        self.json = self.json.scatter(positions, "{}")
        for position in positions:
            self.problems[position] = problem
            self.value_problems[position] = None

    def frame(self) -> pl.DataFrame:
        return self.rows.with_columns(
            self.json.alias("_json"),
            pl.Series("_decode_problem", self.problems, dtype=pl.String),
            pl.Series("_value_problem", self.value_problems, dtype=pl.String),
        )


# How polars' decoder refuses a record: a ComputeError; a ShapeError where every text of
# the day is empty.
_REFUSED = (pl.exceptions.ComputeError, pl.exceptions.ShapeError)

# What polars' JSON decoder refuses, failing the decode of the whole day:
# - an unpaired low surrogate escape or two high ones in a row (it decodes a single high one
#   to NUL), which a source can send (JSON.stringify escapes half an emoji that a client cut
#   in two), and a control character written as is instead of escaped;
# - an array or an object where a field is read as text (a NocoDB attachment or link column
#   mapped to a field, a JSON column in an export);
# - a number outside a double's range (1e400, anywhere in the record), NaN and Infinity;
# - a record that is not a JSON object, or is empty.
# Its error does not say which record, so each is found by halving the day
# (`_refused_positions`). These patterns find the likely ones in one pass first, so a day
# where many records hold one (a mapped column that is always an array) is not halved down
# to every record. Where the candidates decode together, they are kept as sent.
_UNDECODABLE_CANDIDATES = (
    r"[\x00-\x1f]",
    r"\\u[dD][89a-fA-F]",
    r"[eE]\+?\d{3,}|NaN|Infinity",
    r"^\s*(?:[^\s{]|$)",
)


def _with_decodable_json(
    rows: pl.DataFrame, source_fields: list[str], deep: list[int], optional: frozenset[str]
) -> pl.DataFrame:
    """`rows` with the JSON to decode in `_json` and why a record could not be read in
    `_decode_problem`. Each record polars refuses, and each of `deep` (the positions of
    those it could crash on, `_DEEP_FROM`), is written again by `_readable_json`; every
    other record is decoded as the source sent it. `record` itself stays as the source sent
    it, for `processing_errors`."""
    records = rows.get_column("record")
    dtype = _fields_dtype(source_fields)
    structured_field = "|".join(pl.escape_regex(name) for name in source_fields)
    patterns = (*_UNDECODABLE_CANDIDATES, f'"(?:{structured_field})"\\s*:\\s*[\\[{{]')
    candidates = records.str.contains("|".join(f"(?:{p})" for p in patterns)).arg_true()
    rewrites = _Rewrites(rows, source_fields, optional)
    # First, before polars reads any of them, those it could crash on.
    rewrites.rewrite(deep)
    if not _decodes(rewrites.json.gather(candidates), dtype):
        # Written again, a record polars decodes gives the same texts, so the candidates are
        # not halved: a day where every record is one would halve down to each.
        rewrites.rewrite(candidates.to_list())
    # What the patterns missed.
    missed = _refused_positions(rewrites.json, dtype)
    if missed:
        rewrites.rewrite(missed)
        # `_readable_json` writes scalars only, which polars decodes; should it still refuse
        # one, that record keeps no field, so the day's second decode cannot fail.
        still_refused = _refused_positions(rewrites.json, dtype)
        rewrites.keep_no_field(still_refused, "the record could not be decoded")
    return rewrites.frame()


def _fields_dtype(source_fields: list[str]) -> pl.Struct:
    return pl.Struct({name: pl.String() for name in source_fields})


# Below this many records the streaming engine's start costs more than it saves.
_STREAMED_FROM = 50_000


def _refused_positions(texts: pl.Series, dtype: pl.DataType) -> list[int]:
    """The positions of the records polars' decoder refuses. Its error does not say which,
    so the day is halved until each is alone: with one such record, about three decodes of
    the day."""
    if _decodes(texts, dtype):
        return []
    if texts.len() == 1:
        return [0]
    middle = texts.len() // 2
    head = _refused_positions(texts.head(middle), dtype)
    tail = _refused_positions(texts.tail(texts.len() - middle), dtype)
    return head + [middle + position for position in tail]


def _decodes(texts: pl.Series, dtype: pl.DataType) -> bool:
    try:
        if texts.len() >= _STREAMED_FROM:
            # The streaming engine decodes on every core (`_decode_rows`).
            decoded = (
                pl.LazyFrame({"json": texts})
                .select(pl.col("json").str.json_decode(dtype))
                .collect(engine="streaming")
                .to_series()
            )
        else:
            decoded = texts.str.json_decode(dtype)
    except _REFUSED:
        return False
    # An empty text alone decodes to no row at all.
    return decoded.len() == texts.len()


def _readable_json(
    record: str, source_fields: list[str], optional: frozenset[str] = frozenset()
) -> tuple[str, str | None, str | None]:
    """The record's fields written again as JSON polars decodes, what could not be kept of
    the record, and what could not be kept of its `optional` fields (the record is kept
    without those values: a latency of NaN, a feedback column holding an array).

    Python pairs the halves of a character itself: what stays a surrogate is unpaired and
    becomes NUL, which the cleaning then removes and counts, as it does for the unpaired
    high surrogates polars accepts. strict=False accepts control characters written as is;
    dumps escapes them. A field holding an array, an object or a number no double holds is
    left out and named; a record that is not a JSON object keeps no field."""
    try:
        # The first of a repeated key wins, as in polars' decoder.
        value = json.loads(record, strict=False, object_pairs_hook=_first_of_each_key)
    except ValueError as error:
        return "{}", f"the record is not valid JSON ({error.msg} at character {error.pos})", None
    except RecursionError:
        return "{}", "the record is nested too deeply to read", None
    if not isinstance(value, dict):
        return "{}", f"the record is a JSON {_json_kind(value)}, not an object", None
    fields, problems, value_problems = {}, [], []
    for name in source_fields:
        field = value.get(name)
        found = value_problems if name in optional else problems
        if isinstance(field, list | dict):
            found.append(f"{name} holds a JSON {_json_kind(field)}, not a single value")
        elif isinstance(field, bool):
            found.append(f"{name} holds JSON {str(field).lower()}, not a text or a number")
        elif isinstance(field, float) and not math.isfinite(field):
            found.append(f"{name} is not a finite number")
        elif name in value:
            fields[name] = field
    text = json.dumps(lone_surrogates_as_nul(fields), ensure_ascii=False)
    return text, "; ".join(problems) or None, "; ".join(value_problems) or None


def _first_of_each_key(pairs: list[tuple[str, object]]) -> dict:
    kept: dict = {}
    for key, value in pairs:
        kept.setdefault(key, value)
    return kept


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number"


# How JSON writes a character `CONTROL_CHARACTERS` holds: `\u0000`-`\u001f`, `\b`, `\f`,
# or half a surrogate pair (polars decodes an unpaired one to NUL). polars refuses such a
# character written as is, and Python's rewrite (`_readable_json`) escapes it so.
_CONTROL_ESCAPES = r"\\(?:u00[01]|u[dD][89a-fA-F]|[bf])"


def _decode_rows(
    rows: pl.LazyFrame, field_map: dict[str, str], source_fields: list[str], *, json_column: str
) -> pl.DataFrame:
    decoded = pl.col(json_column).str.json_decode(_fields_dtype(source_fields))
    texts = [f"_text_{canonical}" for canonical in field_map]

    def text(canonical: str, source: str, *, clean: bool) -> pl.Expr:
        value = pl.col("_fields").struct.field(source)
        if clean:
            value = value.str.replace_all(CONTROL_CHARACTERS, "")
        if canonical in _VERBATIM_FIELDS:
            return value.alias(f"_text_{canonical}")
        stripped = value.str.strip_chars()
        return pl.when(stripped == "").then(None).otherwise(stripped).alias(f"_text_{canonical}")

    def fields(frame: pl.LazyFrame, *, clean: bool) -> pl.LazyFrame:
        # Decode once into a struct, then take its fields: decoding per field costs 10x.
        return frame.with_columns(decoded.alias("_fields")).with_columns(
            text(canonical, source, clean=clean) for canonical, source in field_map.items()
        )

    holds_controls = pl.any_horizontal(
        pl.col("_fields").struct.field(source).str.contains(CONTROL_CHARACTERS).fill_null(False)
        for source in source_fields
    )
    decoded_rows = (
        fields(rows, clean=False)
        .with_columns(pl.col(json_column).str.contains(_CONTROL_ESCAPES).alias("_escapes"))
        .drop("_fields")
        # The streaming engine decodes slices of the day on every core; the in-memory one
        # decoded the column on one.
        .collect(engine="streaming")
    )
    escapes = decoded_rows.get_column("_escapes").arg_true()
    decoded_rows = decoded_rows.drop("_escapes").with_columns(
        pl.repeat(False, decoded_rows.height, dtype=pl.Boolean, eager=True).alias(
            "_controls_removed"
        )
    )
    if escapes.len():
        # Only a record whose JSON writes one of those escapes can hold a control character
        # once decoded: those few are decoded again, searched and cleaned (a regex over every
        # field of every record was a quarter of validating real-length messages). Cleaning
        # one that holds none gives its texts as they were.
        rescanned = (
            fields(decoded_rows[escapes].lazy(), clean=True)
            .select(*texts, holds_controls.alias("_controls_removed"))
            .collect()
        )
        decoded_rows = decoded_rows.with_columns(
            decoded_rows.get_column(name).scatter(escapes, rescanned.get_column(name))
            for name in (*texts, "_controls_removed")
        )
    return decoded_rows.drop("_json", strict=False)


def _text(name: str) -> pl.Expr:
    return pl.col(f"_text_{name}")


# A reason quotes the text it could not read ("invalid feedback 'email me at …'"; several
# reasons are joined by "; "). What a person typed belongs in processing_errors, anonymized,
# not in run metadata, which an erasure cannot reach. Quoted with its backslashes and quotes
# escaped, a value ends at the first unescaped quote, whatever it holds.
_QUOTED_VALUE = r"'(?:[^'\\]|\\.)*'"
# Line breaks are shown as symbols, not as `\n`: the `n` of an escape glued the value
# after it to a letter, and no word boundary found a card or a phone number there, so the
# reason kept it raw while the record's copy was anonymized.
_LINE_BREAKS = (("\r\n", "⏎"), ("\n", "⏎"), ("\r", "⏎"))


def _quoted(text: pl.Expr) -> pl.Expr:
    escaped = text.str.replace_all("\\", "\\\\", literal=True)
    for character, escape in (("'", "\\'"), *_LINE_BREAKS):
        escaped = escaped.str.replace_all(character, escape, literal=True)
    return pl.concat_str(pl.lit("'"), escaped, pl.lit("'"))


def reason_without_values(reason: pl.Expr) -> pl.Expr:
    """The reason with every quoted value shown as '…': what went wrong, not what was
    written."""
    return reason.str.replace_all(_QUOTED_VALUE, "'…'")


# An integer as written: "4", "+4", "4.0". Read through a double, "0.99999999999999999"
# became 1 and a rating outside 1-5 passed; a JSON number comes here already read so
# (polars writes 4.0 as "4"), as JSON readers read numbers.
_WHOLE_NUMBER = r"^[+-]?\d+(?:\.0*)?$"


def _integer(text: pl.Expr) -> pl.Expr:
    # Read as an integer, digit for digit (through a double, 17 digits lost the last one).
    digits = text.str.replace(r"\.0*$", "").str.strip_prefix("+")
    return pl.when(text.str.contains(_WHOLE_NUMBER)).then(digits.cast(pl.Int64, strict=False))


class Rule(NamedTuple):
    """Where a record breaks a rule, and what `processing_errors` says of it. Apart, so a
    day's reasons are written only for the records that need one.

    `empties`: the optional field the rule reads. A record that breaks only such rules is
    kept with those fields left empty (a rating of 7 rejected the whole conversation, and
    its messages then counted in none); one that breaks another rule too is rejected."""

    broken: pl.Expr
    reason: pl.Expr
    empties: str | None = None


def _optional(rule: Rule, name: str) -> Rule:
    return rule._replace(empties=name)


# Each rule reads the typed column `name` and its text `_text_<name>`, both computed once.
def _required(name: str) -> Rule:
    return Rule(_text(name).is_null(), pl.lit(f"missing {name}"))


def _bounded_id(name: str) -> Rule:
    # The value is not quoted: it is the part too long to keep.
    return Rule(~_short_enough(_text(name)), pl.lit(f"{name} is longer than {MAX_ID_BYTES} bytes"))


def _short_enough(text: pl.Expr) -> pl.Expr:
    return text.str.len_bytes() <= MAX_ID_BYTES


def _parse_check(name: str) -> Rule:
    """'invalid <field> <value>' where the text is present but did not parse."""
    return Rule(
        _text(name).is_not_null() & pl.col(name).is_null(),
        pl.format(f"invalid {name} {{}}", _quoted(_text(name))),
    )


def _non_negative(name: str) -> Rule:
    return Rule(pl.col(name) < 0, pl.format(f"negative {name} {{}}", pl.col(name)))


def _at_most(name: str, limit: int, what: str) -> Rule:
    # NaN compares above every number in polars, and infinity is not a measurement either:
    # `_finite` names them instead.
    value = pl.col(name)
    over = (value > limit) & value.cast(pl.Float64).is_finite()
    return Rule(over, pl.format(f"{name} {{}} is over {what}", value))


def _finite(name: str) -> Rule:
    """A text "NaN" or "inf" parses as a float; neither is a measurement."""
    value = pl.col(name)
    return Rule(~value.is_finite(), pl.lit(f"{name} is not a finite number"))


def _one_of(name: str, allowed: tuple[str, ...]) -> Rule:
    return Rule(
        pl.col(name).is_not_null() & ~pl.col(name).is_in(allowed),
        pl.format(f"invalid {name} {{}}", _quoted(_text(name))),
    )


def _in_partition_day(name: str) -> Rule:
    return Rule(
        pl.col(name).dt.date() != pl.col("day"),
        pl.format(f"{name} {{}} is outside partition day {{}}", _text(name), pl.col("day")),
    )


# Why an optional field's value could not be read at all (`_decode`).
_VALUE_PROBLEM = "_value_problem"


def _empty_broken_values(
    kept: pl.DataFrame, rules: list[Rule]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`kept` with each value an optional rule finds wrong left empty, and the records that
    held one, each with its reasons (for processing_errors). Only the newest copy of a
    record is looked at: an older copy is reported as superseded, once."""
    if not rules:
        return kept, kept.clear()
    broken = [rule.broken.fill_null(False) for rule in rules]
    holding = kept.filter(pl.any_horizontal(*broken))
    if holding.is_empty():
        return kept, holding
    reasons = [pl.when(b).then(rule.reason) for b, rule in zip(broken, rules, strict=True)]
    fields = dict.fromkeys(rule.empties for rule in rules)

    def field_broken(field: str | None) -> pl.Expr:
        return pl.any_horizontal(
            b for b, rule in zip(broken, rules, strict=True) if rule.empties == field
        )

    def values_of(field: str | None) -> pl.Expr:
        if field == _VALUE_PROBLEM:  # one reason per value, "; " between them
            return pl.col(field).str.count_matches("; ").fill_null(-1) + 1
        return field_broken(field).cast(pl.UInt32)

    # Values, not rules: a latency of -inf breaks two rules and leaves one value empty.
    count = pl.sum_horizontal(values_of(f) for f in fields)
    emptied = holding.with_columns(
        pl.concat_str(
            [*reasons, pl.when(count > 1).then(pl.lit(KEPT_WITHOUT_VALUES))
             .otherwise(pl.lit(KEPT_WITHOUT_VALUE))],
            separator="; ",
            ignore_nulls=True,
        ).alias("_reason")
    )  # fmt: skip
    cleared = kept.with_columns(
        pl.when(field_broken(f)).then(None).otherwise(pl.col(f)).alias(f) for f in fields
    )
    return cleared, emptied


def _split(
    typed: pl.DataFrame,
    rules: list[Rule],
    *,
    kind: TableKind,
    columns: dict[str, pl.DataType],
    key_source: str,
) -> Validated:
    """Separates rows that could not be read or break a rule, then keeps the newest copy of
    each key. `key_source`: the key's field in the records as sent."""
    key = KEY_FIELD[kind]
    unreadable = pl.col("_decode_problem").is_not_null()
    # An optional field whose value could not be read at all (`_readable_json`): already
    # left out of the decoded fields, so the rule has nothing more to empty.
    rules = [*rules, Rule(pl.col(_VALUE_PROBLEM).is_not_null(), pl.col(_VALUE_PROBLEM),
                          empties=_VALUE_PROBLEM)]  # fmt: skip
    rejecting = [rule for rule in rules if rule.empties is None]
    emptying = [rule for rule in rules if rule.empties is not None]
    broken = typed.select(
        pl.any_horizontal(unreadable, *(rule.broken.fill_null(False) for rule in rejecting))
    ).to_series()
    passing = typed.filter(~broken)
    breaking = typed.filter(broken).with_columns(
        # What could not be read explains the fields it left missing: said with only the
        # optional values that could not be read either, no other rule.
        pl.coalesce(
            pl.when(unreadable).then(
                pl.concat_str(
                    "_decode_problem", "_value_problem", separator="; ", ignore_nulls=True
                )
            ),
            pl.concat_str(
                [pl.when(rule.broken).then(rule.reason) for rule in rules],
                separator="; ",
                ignore_nulls=True,
            ),
        ).alias("_reason")
    )
    # NocoDB can hold the same record twice (a re-delivery, an edit stored as a new row):
    # the most recently written copy wins and the older ones are reported, not dropped.
    # Only the copies need ordering; a key seen once is its own newest copy. Copies are
    # copies within a day: a range run validates several days at once, and must give each
    # day what a run of that day alone gives it (a message held on D1 and D2 was rejected
    # on D1 as superseded in a range run, kept there in a run of D1). Copies on two days
    # are counted once downstream (`newest_copies`).
    within_day = [key, "day"]
    copies = passing.select(pl.struct(within_day).is_duplicated()).to_series()
    ordered = passing.filter(copies).sort([*_copy_order(passing.columns), "_row"], nulls_last=False)
    is_newest = pl.col("_row") == pl.col("_row").last().over(within_day)
    newest = pl.concat([passing.filter(~copies), ordered.filter(is_newest)])
    superseded = ordered.filter(~is_newest)
    newest, emptied = _empty_broken_values(newest, emptying)
    valid = newest.select(list(columns)).cast(columns)
    # A key is compared once cleaned (control characters removed, stripped): two records
    # whose keys differ only so ("m-1" and "m-1\x01") are not copies of one message, and
    # the older one is an error, not a copy whose newest was kept.
    as_sent = pl.col("record").str.json_path_match(f"$[{json.dumps(key_source)}]")
    # A message id another conversation's message also has is not a copy: one of two
    # different messages is lost, and the error rate must count it (a source numbering its
    # messages 1, 2, 3... in each conversation lost all but one conversation's, at 0 %).
    owner = "conversation_id" if key != "conversation_id" and "conversation_id" in columns else None
    newest_as_sent = ordered.filter(is_newest).select(
        *within_day,
        as_sent.alias("_newest_as_sent"),
        (pl.col(owner) if owner else pl.lit(None, pl.String)).alias("_newest_owner"),
    )
    other_owner = (
        pl.col(owner).is_not_null()
        & pl.col("_newest_owner").is_not_null()
        & (pl.col(owner) != pl.col("_newest_owner"))
        if owner
        else pl.lit(False)
    )
    # Of one conversation's copies of the lost message, only the newest is the loss: the
    # older ones are its copies (three copies over two conversations counted two errors
    # for one message lost).
    owners_newest = (
        pl.col("_row") == pl.col("_row").last().over([*within_day, owner])
        if owner
        else pl.lit(True)
    )
    superseded = superseded.with_columns(owners_newest.alias("_owners_newest"))
    superseded = superseded.join(newest_as_sent, on=within_day, how="left").with_columns(
        pl.when(as_sent.is_not_null() & pl.col("_newest_as_sent").is_not_null()
                & (as_sent != pl.col("_newest_as_sent")))
        .then(pl.format(f"{key} {{}} is another record's {key} once cleaned",
                        _quoted(as_sent)))
        .when(other_owner & pl.col("_owners_newest"))
        .then(pl.lit(f"duplicate {key}: another conversation's message has it too, and the "
                     "newer one was kept"))
        .otherwise(pl.lit(f"duplicate {key}; {SUPERSEDED}"))
        .alias("_reason")
    ).drop("_newest_as_sent", "_newest_owner", "_owners_newest")  # fmt: skip
    failed = pl.concat([breaking, superseded, emptied], how="diagonal_relaxed")
    rejected = failed.select(
        pl.col("day"),
        pl.lit(kind).alias("table"),
        pl.lit("validate").alias("stage"),
        pl.col("record_id"),
        _shown_id(_text(key)).alias("key"),
        pl.coalesce(
            pl.col("record_id"),
            _shown_id(_record_key_of(kind, key)),
            pl.col("record").hash().cast(pl.String),
        ).alias("record_key"),
        _shown_id(_text("conversation_id")).alias("conversation_id"),
        pl.col("_reason").alias("reason"),
        pl.col("record"),
    ).cast(ERROR_SCHEMA)
    # Without NocoDB's Id, two rows of one record share a key: a copy superseded by a newer
    # one kept without a value, or two bad copies. Their MongoDB documents (keyed by it) were
    # one, for two rows in the lake. Such keys take the hash of the row's record and reason.
    shared = pl.col("record_id").is_null() & pl.struct("day", "record_key").is_duplicated()
    rejected = rejected.with_columns(
        pl.when(shared)
        .then(
            pl.format(
                "{}#{}",
                pl.col("record_key"),
                pl.concat_str("record", "reason", ignore_nulls=True).hash().cast(pl.String),
            )
        )
        .otherwise(pl.col("record_key"))
        .alias("record_key")
    )
    # The same record sent twice byte for byte (two older copies, two bad copies) has the
    # same hash too: the second and later such rows are numbered, in the day's order.
    again = pl.int_range(pl.len()).over("day", "record_key")
    rejected = rejected.with_columns(
        pl.when(pl.col("record_id").is_null() & (again > 0))
        .then(pl.format("{}.{}", pl.col("record_key"), again))
        .otherwise(pl.col("record_key"))
        .alias("record_key")
    )
    return Validated(valid=valid, rejected=rejected)


def _record_key_of(kind: TableKind, key: str) -> pl.Expr:
    """A rejected record's key where it has no NocoDB Id: a message's id within its
    conversation (`conversation:message`), as a message id is one message within a
    conversation only. By the id alone, message 1 of two conversations rejected on one day
    was one processing_errors document in MongoDB for two rows in the lake; joined without
    escaping (`keys.joined_key`), message `m` of conversation `c:d` and message `d:m` of
    conversation `c` were too."""
    if kind != "messages":
        return _text(key)
    # Without a conversation, the id alone, escaped too: message `c:m` of no conversation
    # was `c:m`, as message `m` of conversation `c` is.
    return pl.coalesce(
        joined_key_expr(_text("conversation_id"), _text(key)), escaped_part_expr(_text(key))
    )


def _shown_id(text: pl.Expr) -> pl.Expr:
    """An id as a rejection names it: null when over `MAX_ID_BYTES` (the record keeps it),
    since the rejection's key becomes its document's `_id`."""
    return pl.when(_short_enough(text)).then(text)


def _typed(
    decoded: pl.DataFrame, columns: dict[str, pl.Expr], timestamps: dict[str, str]
) -> pl.DataFrame:
    """`columns` computed from the texts, and each of `timestamps` parsed from its field's
    text (`with_utc_timestamps`)."""
    return with_utc_timestamps(
        decoded.lazy().with_columns(expr.alias(name) for name, expr in columns.items()),
        {name: f"_text_{field}" for name, field in timestamps.items()},
    )


def validate_messages(raw: pl.DataFrame, schema: SourceSchema | None = None) -> Validated:
    """Raw message records of one or more days -> typed messages and rejected records."""
    schema = schema or SourceSchema()
    role = _text("role").str.to_lowercase().replace(schema.role_map())
    # An assistant's message that only calls a tool has no text (OpenAI's format writes its
    # content as null), nor may a tool's that returned nothing: kept with empty content.
    # Rejected as "missing content", a bot that calls tools lost a message per call.
    may_be_empty = role.is_in(ROLES_WITHOUT_TEXT)
    typed = _typed(
        _decode(raw, "messages", schema),
        {
            "message_id": _text("message_id"),
            "conversation_id": _text("conversation_id"),
            "role": role,
            "content": pl.when(_text("content").is_null() & may_be_empty)
            .then(pl.lit(""))
            .otherwise(_text("content")),
            "model": _text("model"),
            "prompt_tokens": _integer(_text("prompt_tokens")),
            "completion_tokens": _integer(_text("completion_tokens")),
            "latency_ms": _text("latency_ms").cast(pl.Float64, strict=False),
            "feedback": _text("feedback").str.to_lowercase(),
        },
        {
            "created_at": "created_at",
            "source_created_at": "CreatedAt",
            "source_updated_at": "UpdatedAt",
        },
    )
    rules = [
        _required("message_id"),
        _bounded_id("message_id"),
        _required("conversation_id"),
        _bounded_id("conversation_id"),
        _required("role"),
        _one_of("role", MESSAGE_ROLES),
        Rule(
            _text("content").is_null() & ~may_be_empty.fill_null(False),
            pl.lit("missing content"),
        ),
        _required("created_at"),
        _parse_check("created_at"),
        _in_partition_day("created_at"),
        # The measurements and the feedback are optional: a wrong one is left empty and
        # the message kept (it still counts, is categorized and translated).
        *(
            _optional(rule, rule_field)
            for rule_field, field_rules in (
                ("prompt_tokens", (
                    _parse_check("prompt_tokens"),
                    _non_negative("prompt_tokens"),
                    _at_most("prompt_tokens", MAX_TOKENS, "a billion"),
                )),
                ("completion_tokens", (
                    _parse_check("completion_tokens"),
                    _non_negative("completion_tokens"),
                    _at_most("completion_tokens", MAX_TOKENS, "a billion"),
                )),
                ("latency_ms", (
                    _parse_check("latency_ms"),
                    _non_negative("latency_ms"),
                    _finite("latency_ms"),
                    _at_most("latency_ms", MAX_LATENCY_MS, "a day"),
                )),
                ("feedback", (_one_of("feedback", FEEDBACK_VALUES),)),
            )
            for rule in field_rules
        ),
    ]  # fmt: skip
    validated = _split(
        typed, rules, kind="messages", columns=MESSAGE_SCHEMA,
        key_source=schema.source_field("messages", KEY_FIELD["messages"]),
    )  # fmt: skip
    return Validated(
        valid=validated.valid.sort("created_at", "message_id"),
        rejected=validated.rejected,
        records_with_controls_removed=int(typed["_controls_removed"].sum()),
    )


def validate_conversation_headers(
    raw: pl.DataFrame, schema: SourceSchema | None = None
) -> Validated:
    """Raw conversation records -> typed conversation headers and rejected records."""
    schema = schema or SourceSchema()
    low, high = RATING_RANGE
    typed = _typed(
        _decode(raw, "conversations", schema),
        {
            "conversation_id": _text("conversation_id"),
            "user_id": _text("user_id"),
            "model": _text("model"),
            "channel": _text("channel").str.to_lowercase(),
            "rating": _integer(_text("rating")),
        },
        {
            "started_at": "started_at",
            "source_created_at": "CreatedAt",
            "source_updated_at": "UpdatedAt",
        },
    )
    rules = [
        _required("conversation_id"),
        _bounded_id("conversation_id"),
        _required("user_id"),
        _required("started_at"),
        _parse_check("started_at"),
        _in_partition_day("started_at"),
        # An optional rating out of range is left empty; the conversation is kept.
        _optional(_parse_check("rating"), "rating"),
        Rule(
            (pl.col("rating") < low) | (pl.col("rating") > high),
            pl.format(f"rating {{}} outside {low}-{high}", pl.col("rating")),
            empties="rating",
        ),
    ]
    validated = _split(
        typed, rules, kind="conversations", columns=CONVERSATION_HEADER_SCHEMA,
        key_source=schema.source_field("conversations", KEY_FIELD["conversations"]),
    )  # fmt: skip
    return Validated(
        valid=validated.valid.sort("started_at", "conversation_id"),
        rejected=validated.rejected,
        records_with_controls_removed=int(typed["_controls_removed"].sum()),
    )
