"""Raw records kept as JSON (`processing_errors.record`, `translation_errors.record`): PII
found and replaced in the values they hold, not in their JSON text.

In the JSON text a line break inside a value is the two characters `\\n`, so a card number,
IBAN or phone number on the line after one is glued to the letter `n` and no word boundary
finds it (`"card:\\n4111 1111 1111 1111"`). Each record is decoded, every string in it is
anonymized as text, and the record is written again. A record that is not JSON is read as
text with its escapes turned back into the characters they stand for.

Pure: polars and the standard library, no Dagster.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator

import polars as pl

from analytics_assets.privacy.pii import anonymize
from analytics_assets.transforms.raw import lone_surrogates_as_nul

# What a JSON escape stands for, for a record that does not decode (an escape `json` could
# not read is kept as written).
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|([\"\\/bfnrt]))")
_SIMPLE_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_NOT_DECODED = object()


def _unescaped(text: str) -> str:
    def character(match: re.Match) -> str:
        if match.group(1):
            return chr(int(match.group(1), 16))
        return _SIMPLE_ESCAPES.get(match.group(2), match.group(2))

    # Escaped halves of a character are paired again; an unpaired one, which UTF-8 cannot
    # hold, becomes U+FFFD.
    unescaped = _ESCAPE.sub(character, text)
    return unescaped.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _decoded(text: str | None) -> object:
    if text is None:
        return _NOT_DECODED
    try:
        # Python pairs the halves of a character itself; an unpaired one becomes NUL, as
        # validation reads it (`lone_surrogates_as_nul`).
        return lone_surrogates_as_nul(json.loads(text, strict=False))
    except (ValueError, RecursionError):
        return _NOT_DECODED


def _strings(value: object, found: list[str]) -> None:
    """Every string in `value`, depth first (values only: keys are the source's field
    names)."""
    if isinstance(value, str):
        found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _strings(item, found)
    elif isinstance(value, list):
        for item in value:
            _strings(item, found)


def _replaced(value: object, replacements: Iterator[str]) -> object:
    """`value` with its strings taken in turn from `replacements` (in `_strings`' order)."""
    if isinstance(value, str):
        return next(replacements)
    if isinstance(value, dict):
        return {key: _replaced(item, replacements) for key, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item, replacements) for item in value]
    return value


def record_texts(records: pl.Series) -> pl.Series:
    """What a PII search reads of each record: the strings it holds, one per line (a record
    that is not JSON: its text with the escapes turned back)."""
    texts = []
    for record in records:
        value = _decoded(record)
        if value is _NOT_DECODED:
            texts.append(None if record is None else _unescaped(record))
            continue
        strings: list[str] = []
        _strings(value, strings)
        texts.append("\n".join(strings))
    return pl.Series(records.name, texts, dtype=pl.String())


def user_id_text(value: object) -> str:
    """A user id as the validated headers read it (and pseudonymize it): a string stripped,
    any other JSON value as its JSON text (a number as written)."""
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def anonymize_records(
    records: pl.Series, *, key: bytes | None, kinds: tuple[str, ...]
) -> tuple[pl.Series, Counter]:
    """`records` with every string they hold anonymized (`pii.anonymize`, one search over
    all of them), written again as JSON, and the findings counted by type. A record that is
    not JSON is anonymized as text, its escapes turned back first."""
    decoded = [_decoded(record) for record in records]
    strings: list[str] = []
    undecodable: list[str] = []
    for record, value in zip(records, decoded, strict=True):
        if value is not _NOT_DECODED:
            _strings(value, strings)
        elif record is not None:
            undecodable.append(_unescaped(record))
    searched = pl.Series([*strings, *undecodable], dtype=pl.String())
    if not searched.len():
        return records, Counter()
    anonymized, counts = anonymize(searched, key=key, kinds=kinds)
    changed = (anonymized != searched).fill_null(False).to_list()
    replacements = iter(anonymized.to_list())
    changes = iter(changed)
    result = []
    for record, value in zip(records, decoded, strict=True):
        if value is _NOT_DECODED:
            if record is not None:
                text, record_changed = next(replacements), next(changes)
                # Nothing found: the record stays exactly as the source sent it.
                record = text if record_changed else record
            result.append(record)
            continue
        count: list[str] = []
        _strings(value, count)
        if any([next(changes) for _ in count]):
            mine = iter([next(replacements) for _ in count])
            record = json.dumps(_replaced(value, mine), ensure_ascii=False)
        else:
            for _ in count:
                next(replacements)
        result.append(record)
    return pl.Series(records.name, result, dtype=pl.String()), counts


def pseudonymize_user_field(
    records: pl.Series, user_field: str, pseudonym: Callable[[str], str]
) -> pl.Series:
    """`records` with `user_field`, whatever JSON value it holds, replaced by `pseudonym` of
    it as the validated headers read it (`user_id_text`), so a rejected record and its
    conversation carry the same pseudonym. Records without it stay as they are."""
    # In a record that does not decode (cut short, say), the field is found by its shape.
    written = re.compile(rf'("{re.escape(user_field)}"\s*:\s*)("(?:[^"\\]|\\.)*"|[^\s,}}\]]+)')

    def swap_written(match: re.Match) -> str:
        value = match.group(2)
        text = _unescaped(value[1:-1]) if value.startswith('"') else value
        return match.group(1) + json.dumps(pseudonym(text.strip()))

    swapped = []
    for record in records:
        value = _decoded(record)
        if isinstance(value, dict):
            if value.get(user_field) is not None:
                value[user_field] = pseudonym(user_id_text(value[user_field]))
                record = json.dumps(value, ensure_ascii=False)
        elif record is not None:
            record = written.sub(swap_written, record)
        swapped.append(record)
    return pl.Series(records.name, swapped, dtype=pl.String())
