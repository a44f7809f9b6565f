"""Parsing of the timestamps NocoDB and its exports produce, always to UTC."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")

# NocoDB answers "2026-11-01 10:15:00+00:00"; exports and other writers add a "T", a "Z",
# fractions of a second or drop the offset (read as UTC). Postgres writes an offset of whole
# hours without its minutes ("+01", chrono's `%#z`): the source files such a record under
# its day (Python reads it), and validation rejected it as no time.
_FORMATS_WITH_OFFSET = ("%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z")
_FORMATS_NAIVE = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M")


def parse_utc_timestamp(text: pl.Expr) -> pl.Expr:
    """Text -> Datetime(us, UTC); null where the text is empty or not a timestamp."""
    # Literal replaces: a regex here costs more than all the parsing.
    normalized = (
        text.str.strip_chars()
        .str.replace("T", " ", literal=True, n=1)
        .str.replace("Z", "+00:00", literal=True, n=1)
    )
    candidates = [
        normalized.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
        for fmt in (*_FORMATS_WITH_OFFSET, *_FORMATS_NAIVE)
    ]
    return pl.coalesce(candidates)


def with_utc_timestamps(
    frame: pl.DataFrame | pl.LazyFrame, columns: Mapping[str, str]
) -> pl.DataFrame:
    """`frame` with each `name` of `columns` parsed from its text column by
    `parse_utc_timestamp`, the same values in a fraction of the time.

    `parse_utc_timestamp` normalizes every text and tries every format on every row. Here
    NocoDB's own format, which nearly every row has, is tried alone first; only the rows it
    left empty although their text is not go through the whole parse. A text the first format
    accepts holds no "T" or "Z", so both paths give it the same value.
    """
    first = (
        frame.lazy()
        .with_columns(
            pl.col(text)
            .str.to_datetime(_FORMATS_WITH_OFFSET[0], strict=False, time_unit="us", time_zone="UTC")
            .alias(name)
            for name, text in columns.items()
        )
        # On every core (the in-memory engine parses a column on one).
        .collect(engine="streaming")
    )
    missed = first.select(
        pl.any_horizontal(
            pl.col(name).is_null() & pl.col(text).is_not_null() for name, text in columns.items()
        )
    ).to_series()
    if not missed.any():
        return first
    rows = missed.arg_true()
    reparsed = first[rows].select(
        parse_utc_timestamp(pl.col(text)).alias(name) for name, text in columns.items()
    )
    return first.with_columns(
        first.get_column(name).scatter(rows, reparsed.get_column(name)) for name in columns
    )
