"""Typed errors of the NocoDB client: each says what went wrong and which setting to look at."""

from __future__ import annotations


class NocoDBError(RuntimeError):
    """Base class of every error the client raises."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class NocoDBAuthError(NocoDBError):
    """401/403: the API token (setting NOCODB_API_TOKEN) is missing, wrong or lacks access."""


class NocoDBNotFoundError(NocoDBError):
    """404: an unknown table, base or field."""


class NocoDBQueryError(NocoDBError):
    """400/422: NocoDB refused the query (a bad `where`, an unknown column alias ...)."""


class NocoDBInvalidOffsetError(NocoDBQueryError):
    """422 INVALID_OFFSET_VALUE: the offset is past the end of the table."""


class NocoDBRetriesExhaustedError(NocoDBError):
    """A transient failure (429, 5xx, timeout, reset, truncated body) outlived every retry."""
