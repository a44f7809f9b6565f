"""Checks a document against the `$jsonSchema` subset our collections use.

The same schema is installed server-side; checking here too means a bad document is
reported with the field that is wrong even where the server does not enforce validators.
Supported keywords: bsonType, required, properties, enum, minimum, maximum, maxLength, pattern.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache
from typing import Any

import bson
import polars as pl

# BSON's limit for one document.
MAX_BSON_BYTES = 16 * 1024 * 1024

_BSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "long": (int,),
    "double": (float,),
    "bool": (bool,),
    "date": (dt.datetime,),
    "null": (type(None),),
    "object": (dict,),
    "array": (list, tuple),
}


@cache
def _pattern(expression: str) -> re.Pattern[str]:
    return re.compile(expression)


def _type_matches(value: Any, bson_type: str | list[str]) -> bool:
    names = [bson_type] if isinstance(bson_type, str) else bson_type
    for name in names:
        # bool is an int in Python; BSON keeps them apart.
        if isinstance(value, bool) and name in ("int", "long", "double"):
            continue
        if isinstance(value, _BSON_TYPES[name]):
            return True
    return False


def _field_problem(name: str, value: Any, rule: dict[str, Any]) -> str | None:
    if "bsonType" in rule and not _type_matches(value, rule["bsonType"]):
        return f"field {name!r}: expected {rule['bsonType']}, got {type(value).__name__}"
    if "enum" in rule and value not in rule["enum"]:
        return f"field {name!r}: {value!r} is not one of {rule['enum']}"
    if value is None:
        return None
    if "minimum" in rule and value < rule["minimum"]:
        return f"field {name!r}: {value!r} is below the minimum {rule['minimum']}"
    if "maximum" in rule and value > rule["maximum"]:
        return f"field {name!r}: {value!r} is above the maximum {rule['maximum']}"
    if "maxLength" in rule and len(value) > rule["maxLength"]:
        return f"field {name!r}: length {len(value)} exceeds {rule['maxLength']}"
    if "pattern" in rule and not _pattern(rule["pattern"]).search(value):
        return f"field {name!r}: {value!r} does not match {rule['pattern']}"
    return None


def document_problems(document: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every way the document breaks the schema; empty when it is valid."""
    problems = [
        f"field {name!r}: required but missing"
        for name in schema.get("required", ())
        if name not in document
    ]
    for name, rule in schema.get("properties", {}).items():
        if name in document:
            problem = _field_problem(name, document[name], rule)
            if problem:
                problems.append(problem)
    return problems


def size_problem(document: dict[str, Any]) -> str | None:
    size = len(bson.encode(document))
    if size > MAX_BSON_BYTES:
        return f"document is {size:,} bytes of BSON, over MongoDB's {MAX_BSON_BYTES:,} limit"
    return None


# polars dtypes each BSON type accepts (the frame's side of `_BSON_TYPES`).
def _dtype_matches(dtype: pl.DataType, bson_type: str | list[str]) -> bool:
    names = {bson_type} if isinstance(bson_type, str) else set(bson_type)
    if dtype == pl.Null:
        return True
    if dtype == pl.String:
        return "string" in names
    if dtype == pl.Boolean:
        return "bool" in names
    if dtype.is_integer():
        return bool(names & {"int", "long"})
    if dtype.is_float():
        return "double" in names
    if isinstance(dtype, pl.Datetime):
        return "date" in names
    return bool(names & {"object", "array"})


def _breaks_rule(column: pl.Expr, dtype: pl.DataType, rule: dict[str, Any]) -> pl.Expr:
    """True where a value may break one property's rule (type, enum, null, range, text)."""
    suspect = pl.lit(False)
    bson_type = rule.get("bsonType")
    if bson_type is not None and not _dtype_matches(dtype, bson_type):
        suspect = suspect | column.is_not_null()
    allows_null = bson_type is None or "null" in (
        [bson_type] if isinstance(bson_type, str) else bson_type
    )
    if "enum" in rule:
        allows_null = None in rule["enum"]
        allowed = [value for value in rule["enum"] if value is not None]
        suspect = suspect | (column.is_not_null() & ~column.is_in(allowed))
    if not allows_null:
        suspect = suspect | column.is_null()
    if dtype.is_numeric():
        if "minimum" in rule:
            suspect = suspect | (column < rule["minimum"])
        if "maximum" in rule:
            suspect = suspect | (column > rule["maximum"])
    if dtype == pl.String:
        if "maxLength" in rule:
            suspect = suspect | (column.str.len_chars() > rule["maxLength"])
        if "pattern" in rule:
            suspect = suspect | ~column.str.contains(rule["pattern"])
    return suspect


def suspect_rows(frame: pl.DataFrame, schema: dict[str, Any]) -> pl.Series:
    """Vectorized pre-check: True for rows that may break the schema.

    Only those rows go through `document_problems` (which names the field), so a clean
    day of 100,000 documents is checked in milliseconds instead of a second.
    """
    suspect = pl.lit(False)
    for name in schema.get("required", ()):
        if name not in frame.columns and name not in ("_id",):
            return pl.Series("suspect", [True] * frame.height)
    for name, rule in schema.get("properties", {}).items():
        if name in frame.columns:
            suspect = suspect | _breaks_rule(pl.col(name), frame.schema[name], rule)
    # Only a row with a lot of text can approach the BSON limit; those get an exact size.
    text_bytes = [
        pl.col(n).str.len_bytes().fill_null(0) for n, t in frame.schema.items() if t == pl.String
    ]
    if text_bytes:
        suspect = suspect | (pl.sum_horizontal(text_bytes) > MAX_BSON_BYTES // 2)
    return frame.select(suspect.fill_null(True).alias("suspect")).to_series()
