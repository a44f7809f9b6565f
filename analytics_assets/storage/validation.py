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
