"""Raw records kept as JSON (`processing_errors.record`, `translation_errors.record`): PII
found and replaced in the values they hold, not in their JSON text.

In the JSON text a line break inside a value is the two characters `\\n`, so a card number,
IBAN or phone number on the line after one is glued to the letter `n` and no word boundary
finds it (`"card:\\n4111 1111 1111 1111"`). Each record is decoded; every string and number
in it, and every key of a JSON column inside it, is anonymized as text; and the record is
written again where something was replaced. A record that is not JSON is read as text with
its escapes turned back into the characters they stand for.

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
from analytics_assets.transforms.records import CONTROL_CHARACTERS

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


class _Object(list):
    """A JSON object as the (key, value) pairs it was written with: a key written twice
    keeps both values, so neither escapes the search, and the record is written again as
    it was."""


class _Number(str):
    """A JSON number as it was written (`6011111111111111110.0`, `1e400`, `NaN`): searched
    and, where nothing in it is replaced, written again as it was, not as Python reads it."""


def _decoded(text: str | None) -> object:
    if text is None:
        return _NOT_DECODED
    try:
        return json.loads(
            text,
            strict=False,
            object_pairs_hook=_Object,
            parse_int=_Number,
            parse_float=_Number,
            parse_constant=_Number,
        )
    except (ValueError, RecursionError):
        return _NOT_DECODED


def _text_of(value: str) -> str:
    # Python pairs the halves of a character itself; an unpaired one becomes NUL, as
    # validation reads it (`lone_surrogates_as_nul`), and as polars can hold it.
    return lone_surrogates_as_nul(str(value))


def _leaves(value: object, found: list[str], depth: int = 0) -> None:
    """The text of every string and number in `value`, depth first, and of the keys of
    every object inside it (a JSON column's keys are data; the record's own keys are the
    source's field names). A number is searched as written: a card number in a Number
    column is a card number."""
    if isinstance(value, str):
        found.append(_text_of(value))
    elif isinstance(value, _Object):
        for key, item in value:
            if depth:
                found.append(_text_of(key))
            _leaves(item, found, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _leaves(item, found, depth + 1)


def _dump(value: object, replacements: Iterator[tuple[str, bool]], depth: int = 0) -> str:
    """`value` written as JSON with its leaves taken in turn from `replacements` (text,
    changed), in `_leaves`' order; a number left unchanged stays the number as written."""
    if isinstance(value, _Object):
        pairs = []
        for key, item in value:
            written_key = next(replacements)[0] if depth else _text_of(key)
            pairs.append(
                f"{json.dumps(written_key, ensure_ascii=False)}: "
                f"{_dump(item, replacements, depth + 1)}"
            )
        return "{" + ", ".join(pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(item, replacements, depth + 1) for item in value) + "]"
    if isinstance(value, _Number):
        text, changed = next(replacements)
        return json.dumps(text, ensure_ascii=False) if changed else str(value)
    if isinstance(value, str):
        return json.dumps(next(replacements)[0], ensure_ascii=False)
    return json.dumps(value)


def _unchanged(value: object) -> Iterator[tuple[str, bool]]:
    """`_dump`'s replacements that leave every leaf as it is."""
    leaves: list[str] = []
    _leaves(value, leaves)
    return iter((leaf, False) for leaf in leaves)


def _record_leaves(record: str | None) -> tuple[object, list[str]]:
    """The record decoded, and what a search reads of it: its leaves, or, for a record
    that is not JSON (or too deep to walk and write again), its text with the escapes
    read."""
    value = _decoded(record)
    if value is not _NOT_DECODED:
        leaves: list[str] = []
        try:
            _leaves(value, leaves)
            # Written again once here, where a failure falls back to the text: writing
            # takes more stack per level than reading.
            _dump(value, _unchanged(value))
            return value, leaves
        except RecursionError:
            pass
    return _NOT_DECODED, [] if record is None else [_unescaped(record)]


def record_texts(records: pl.Series) -> pl.Series:
    """What a PII search reads of each record: the strings and numbers it holds, one per
    line (a record that is not JSON: its text with the escapes read)."""
    texts = []
    for record in records:
        _, leaves = _record_leaves(record)
        texts.append("\n".join(leaves) if record is not None else None)
    return pl.Series(records.name, texts, dtype=pl.String())


# What validation removes from a field before it strips it.
_CONTROL_CHARACTERS = re.compile(CONTROL_CHARACTERS)


def user_id_text(value: object) -> str:
    """A user id as the validated headers read it, and so pseudonymize it: a string without
    control characters (an unpaired surrogate is one), stripped; a number as polars writes
    it (1e5 and 1.0 as "100000" and "1"); any other JSON value as its JSON text."""
    if isinstance(value, _Number):
        try:
            number = float(value)
        except ValueError:
            return str(value)
        if number.is_integer() and abs(number) < 2**53:
            return str(int(number))
        return str(value)
    if isinstance(value, str):
        return _CONTROL_CHARACTERS.sub("", _text_of(value)).strip()
    return _dump(value, _unchanged(value))


def anonymize_records(
    records: pl.Series, *, key: bytes | None, kinds: tuple[str, ...]
) -> tuple[pl.Series, Counter]:
    """`records` with every string and number they hold anonymized (`pii.anonymize`, one
    search over all of them), written again as JSON, and the findings counted by type. A
    record with nothing to replace stays exactly as it was; one that is not JSON is
    anonymized as text, its escapes read first."""
    decoded = [_record_leaves(record) for record in records]
    # In record order: each record takes back its own leaves.
    searched = pl.Series([leaf for _, leaves in decoded for leaf in leaves], dtype=pl.String())
    if not searched.len():
        return records, Counter()
    anonymized, counts = anonymize(searched, key=key, kinds=kinds)
    changed = (anonymized != searched).fill_null(False).to_list()
    results = iter(zip(anonymized.to_list(), changed, strict=True))
    rewritten = []
    for record, (value, leaves) in zip(records, decoded, strict=True):
        mine = [next(results) for _ in leaves]
        if not any(was_changed for _, was_changed in mine):
            rewritten.append(record)  # nothing found: as the source sent it
        elif value is _NOT_DECODED:
            rewritten.append(mine[0][0])
        else:
            rewritten.append(_dump(value, iter(mine)))
    return pl.Series(records.name, rewritten, dtype=pl.String()), counts


# A user id field in a record that does not decode (cut short, say): its value to the next
# comma or brace, or a string to its closing quote or to the end of the record.
def _written_field(name: str) -> re.Pattern:
    return re.compile(rf'("{re.escape(name)}"\s*:\s*)("(?:[^"\\]|\\.)*(?:"|\Z)|[^,}}\]]+)')


def pseudonymize_user_field(
    records: pl.Series, user_field: str, pseudonym: Callable[[str], str]
) -> pl.Series:
    """`records` with `user_field`, whatever JSON value it holds (each time the record
    writes it), replaced by `pseudonym` of it as the validated headers read it
    (`user_id_text`), so a rejected record and its conversation carry the same pseudonym.
    Records without it stay as they are."""
    written = _written_field(user_field)

    def swap_written(match: re.Match) -> str:
        value = match.group(2)
        if value.startswith('"'):
            closed = len(value) > 1 and value.endswith('"')
            text = _unescaped(value[1:-1] if closed else value[1:])
        else:
            text = value
        return match.group(1) + json.dumps(pseudonym(text.strip()))

    swapped = []
    for record in records:
        value, _ = _record_leaves(record)
        if isinstance(value, _Object):
            if any(name == user_field and item is not None for name, item in value):
                pairs = _Object(
                    (name, pseudonym(user_id_text(item)))
                    if name == user_field and item is not None
                    else (name, item)
                    for name, item in value
                )
                record = _dump(pairs, _unchanged(pairs))
        elif value is _NOT_DECODED and record is not None:
            record = written.sub(swap_written, record)
        swapped.append(record)
    return pl.Series(records.name, swapped, dtype=pl.String())
