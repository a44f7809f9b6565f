"""Parsing of the timestamps NocoDB and its exports produce, always to UTC."""

from __future__ import annotations

import polars as pl

TIMESTAMP_DTYPE = pl.Datetime("us", "UTC")

# NocoDB answers "2026-11-01 10:15:00+00:00"; exports and other writers add a "T", a "Z",
# fractions of a second or drop the offset (read as UTC).
_FORMATS_WITH_OFFSET = ("%Y-%m-%d %H:%M:%S%.f%:z",)
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
