"""Raw records -> typed, validated, de-duplicated rows; every rejected record keeps its reason.

Pure polars: no Dagster, no I/O. Everything here is vectorized; decoding the records' JSON
is about half the time (`benchmarks/bench_messages.py`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

import polars as pl

from analytics_assets.sources.schema import KEY_FIELD, SourceSchema, TableKind
from analytics_assets.transforms.raw import lone_surrogates_as_nul
from analytics_assets.transforms.timestamps import TIMESTAMP_DTYPE, with_utc_timestamps

MESSAGE_ROLES = ("user", "assistant", "system")
FEEDBACK_VALUES = ("up", "down")
RATING_RANGE = (1, 5)

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


@dataclass(frozen=True)
class Validated:
    valid: pl.DataFrame
    rejected: pl.DataFrame
    # Records whose text lost control characters (see CONTROL_CHARACTERS).
    records_with_controls_removed: int = 0


def empty_errors() -> pl.DataFrame:
    return pl.DataFrame(schema=ERROR_SCHEMA)


# Text kept exactly as written; every other field is stripped and "" counts as missing.
_VERBATIM_FIELDS = frozenset({"content"})

# C0 control characters other than tab, newline and carriage return: a NUL breaks MongoDB
# drivers and downstream CSV exports, and none of them carries meaning in chat text.
# An unpaired surrogate (half an emoji) decodes to NUL (`_with_decodable_json`), so removing
# NUL also removes those.
CONTROL_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def _decode(raw: pl.DataFrame, kind: TableKind, schema: SourceSchema) -> pl.DataFrame:
    """The table's raw rows with every canonical field as text in `_text_<field>`."""
    field_map = schema.field_map(kind)
    source_fields = list(dict.fromkeys(field_map.values()))
    rows = raw.lazy().filter(pl.col("table") == kind).with_row_index("_row")
    try:
        return _decode_rows(rows, field_map, source_fields, json_column="record")
    except pl.exceptions.ComputeError:
        # A record polars' decoder refuses (below): the day is decoded again from `_json`.
        rewritten = _with_decodable_json(rows.collect(engine="streaming"))
        return _decode_rows(rewritten.lazy(), field_map, source_fields, json_column="_json")


# What polars' JSON decoder refuses, failing the decode of the whole day: an unpaired low
# surrogate escape or two high ones in a row (it decodes a single high one to NUL), which a
# source can send (JSON.stringify escapes half an emoji that a client cut in two), and a
# control character written as is instead of escaped.
_UNDECODABLE_CANDIDATE = r"[\x00-\x1f]|\\u[dD][89a-fA-F]"


def _with_decodable_json(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` with the JSON to decode in `_json`: the record, written again where it may
    hold one of the above, with every unpaired surrogate as NUL, which the cleaning then
    removes and counts, as it does for the unpaired high surrogates polars accepts. `record`
    itself stays as the source sent it, for `processing_errors`."""
    records = rows.get_column("record")
    candidate = records.str.contains(_UNDECODABLE_CANDIDATE)
    if not candidate.any():
        return rows.with_columns(records.alias("_json"))
    positions = candidate.arg_true()
    rewritten = [_decodable_json(text) for text in records.gather(positions).to_list()]
    return rows.with_columns(
        records.clone().scatter(positions, pl.Series(rewritten, dtype=pl.String)).alias("_json")
    )


def _decodable_json(record: str) -> str:
    try:
        # Python pairs the halves of a character itself: what stays a surrogate is unpaired.
        # strict=False accepts control characters written as is; dumps escapes them.
        value = json.loads(record, strict=False)
    except ValueError:
        return record
    return json.dumps(lone_surrogates_as_nul(value), ensure_ascii=False)


def _decode_rows(
    rows: pl.LazyFrame, field_map: dict[str, str], source_fields: list[str], *, json_column: str
) -> pl.DataFrame:
    decoded = pl.col(json_column).str.json_decode(
        pl.Struct({name: pl.String() for name in source_fields})
    )
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

    decoded_rows = (
        fields(rows, clean=False)
        .with_columns(
            pl.any_horizontal(
                pl.col("_fields")
                .struct.field(source)
                .str.contains(CONTROL_CHARACTERS)
                .fill_null(False)
                for source in source_fields
            ).alias("_controls_removed")
        )
        .drop("_fields")
        # The streaming engine decodes slices of the day on every core; the in-memory one
        # decoded the column on one.
        .collect(engine="streaming")
    )
    flagged = decoded_rows.get_column("_controls_removed")
    if flagged.any():
        # Removing them costs a regex per field of every record: only where one was found.
        positions = flagged.arg_true()
        cleaned = fields(decoded_rows[positions].lazy(), clean=True).select(texts).collect()
        decoded_rows = decoded_rows.with_columns(
            decoded_rows.get_column(name).scatter(positions, cleaned.get_column(name))
            for name in texts
        )
    return decoded_rows.drop("_json", strict=False)


def _text(name: str) -> pl.Expr:
    return pl.col(f"_text_{name}")


def _integer(text: pl.Expr) -> pl.Expr:
    number = text.cast(pl.Float64, strict=False)
    return pl.when(number == number.floor()).then(number).cast(pl.Int64, strict=False)


class Rule(NamedTuple):
    """Where a record breaks a rule, and what `processing_errors` says of it. Apart, so a
    day's reasons are written only for the records that need one."""

    broken: pl.Expr
    reason: pl.Expr


# Each rule reads the typed column `name` and its text `_text_<name>`, both computed once.
def _required(name: str) -> Rule:
    return Rule(_text(name).is_null(), pl.lit(f"missing {name}"))


def _parse_check(name: str) -> Rule:
    """'invalid <field> <value>' where the text is present but did not parse."""
    return Rule(
        _text(name).is_not_null() & pl.col(name).is_null(),
        pl.format(f"invalid {name} '{{}}'", _text(name)),
    )


def _non_negative(name: str) -> Rule:
    return Rule(pl.col(name) < 0, pl.format(f"negative {name} {{}}", pl.col(name)))


def _one_of(name: str, allowed: tuple[str, ...]) -> Rule:
    return Rule(
        pl.col(name).is_not_null() & ~pl.col(name).is_in(allowed),
        pl.format(f"invalid {name} '{{}}'", _text(name)),
    )


def _in_partition_day(name: str) -> Rule:
    return Rule(
        pl.col(name).dt.date() != pl.col("day"),
        pl.format(f"{name} {{}} is outside partition day {{}}", _text(name), pl.col("day")),
    )


def _split(
    typed: pl.DataFrame,
    rules: list[Rule],
    *,
    kind: TableKind,
    columns: dict[str, pl.DataType],
) -> Validated:
    """Separates rows with any broken rule, then keeps the newest copy of each key."""
    key = KEY_FIELD[kind]
    broken = typed.select(
        pl.any_horizontal(rule.broken.fill_null(False) for rule in rules)
    ).to_series()
    passing = typed.filter(~broken)
    breaking = typed.filter(broken).with_columns(
        pl.concat_str(
            [pl.when(rule.broken).then(rule.reason) for rule in rules],
            separator="; ",
            ignore_nulls=True,
        ).alias("_reason")
    )
    # NocoDB can hold the same record twice (a re-delivery, an edit stored as a new row):
    # the most recently written copy wins and the older ones are reported, not dropped.
    # Only the copies need ordering; a key seen once is its own newest copy.
    copies = passing.get_column(key).is_duplicated()
    ordered = passing.filter(copies).sort(
        pl.coalesce("source_updated_at", "source_created_at"),
        pl.col("record_id").cast(pl.Int64, strict=False),
        "_row",
        nulls_last=False,
    )
    is_newest = pl.col("_row") == pl.col("_row").last().over(key)
    newest = pl.concat([passing.filter(~copies), ordered.filter(is_newest)])
    superseded = ordered.filter(~is_newest)
    valid = newest.select(list(columns)).cast(columns)
    failed = pl.concat(
        [
            breaking,
            superseded.with_columns(
                pl.lit(f"duplicate {key}; superseded by a newer copy").alias("_reason")
            ),
        ]
    )
    rejected = failed.select(
        pl.col("day"),
        pl.lit(kind).alias("table"),
        pl.lit("validate").alias("stage"),
        pl.col("record_id"),
        _text(key).alias("key"),
        pl.coalesce(pl.col("record_id"), _text(key), pl.col("record").hash().cast(pl.String)).alias(
            "record_key"
        ),
        _text("conversation_id").alias("conversation_id"),
        pl.col("_reason").alias("reason"),
        pl.col("record"),
    ).cast(ERROR_SCHEMA)
    return Validated(valid=valid, rejected=rejected)


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
    typed = _typed(
        _decode(raw, "messages", schema),
        {
            "message_id": _text("message_id"),
            "conversation_id": _text("conversation_id"),
            "role": _text("role").str.to_lowercase(),
            "content": _text("content"),
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
        _required("conversation_id"),
        _required("role"),
        _one_of("role", MESSAGE_ROLES),
        Rule(_text("content").is_null(), pl.lit("missing content")),
        _required("created_at"),
        _parse_check("created_at"),
        _in_partition_day("created_at"),
        _parse_check("prompt_tokens"),
        _non_negative("prompt_tokens"),
        _parse_check("completion_tokens"),
        _non_negative("completion_tokens"),
        _parse_check("latency_ms"),
        _non_negative("latency_ms"),
        _one_of("feedback", FEEDBACK_VALUES),
    ]
    validated = _split(typed, rules, kind="messages", columns=MESSAGE_SCHEMA)
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
        _required("user_id"),
        _required("started_at"),
        _parse_check("started_at"),
        _in_partition_day("started_at"),
        _parse_check("rating"),
        Rule(
            (pl.col("rating") < low) | (pl.col("rating") > high),
            pl.format(f"rating {{}} outside {low}-{high}", pl.col("rating")),
        ),
    ]
    validated = _split(typed, rules, kind="conversations", columns=CONVERSATION_HEADER_SCHEMA)
    return Validated(
        valid=validated.valid.sort("started_at", "conversation_id"),
        rejected=validated.rejected,
        records_with_controls_removed=int(typed["_controls_removed"].sum()),
    )
