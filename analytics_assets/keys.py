"""How a key made of several ids is written, wherever one is: MongoDB `_id`s
(`CollectionSpec.document_id`), a rejected message's `record_key` in processing_errors and
a raw record's identity for erasure's tombstones.

The ids are joined by `:`, each `\\` and `:` inside an id escaped with a `\\`: joined as they
were, message `m` of conversation `c:d` and message `d:m` of conversation `c` were both
`c:d:m`. Ids without either character join as they always did, so keys written before the
escaping read the same. Pure: no Dagster, no storage.
"""

from __future__ import annotations

import polars as pl

SEPARATOR = ":"


def escaped_part(value: str) -> str:
    """One id as it stands inside a joined key."""
    if "\\" not in value and SEPARATOR not in value:
        return value
    return value.replace("\\", "\\\\").replace(SEPARATOR, "\\" + SEPARATOR)


def joined_key(*parts: str) -> str:
    """The key of several ids (`escaped_part` each, joined by `SEPARATOR`)."""
    return SEPARATOR.join(escaped_part(part) for part in parts)


def escaped_part_expr(value: pl.Expr) -> pl.Expr:
    """`escaped_part` over a column of text."""
    return value.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
        SEPARATOR, "\\" + SEPARATOR, literal=True
    )


def joined_key_expr(*parts: pl.Expr) -> pl.Expr:
    """`joined_key` over columns of text; null where any part is null."""
    return pl.concat_str([escaped_part_expr(part) for part in parts], separator=SEPARATOR)
