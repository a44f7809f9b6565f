"""How message text is anonymized before it reaches the analytics tables."""

from __future__ import annotations

from typing import Literal

import polars as pl
from dagster import ConfigurableResource
from pydantic import Field

from analytics_assets.privacy.pii import PATTERNS, anonymize


class PrivacyResource(ConfigurableResource):
    """`redact` (default): typed placeholders; `pseudonymize`: keyed HMAC tokens (the key
    through an EnvVar); `keep`: raw text (for a restricted deployment only). The raw records
    stay in `nocodb_raw_pages` whatever the policy."""

    message_policy: Literal["redact", "pseudonymize", "keep"] = Field(default="redact")
    pseudonym_key: str | None = Field(
        default=None, description="HMAC key for `pseudonymize` (PRIVACY_PSEUDONYM_KEY)."
    )
    types: list[str] = Field(
        default_factory=lambda: list(PATTERNS), description="PII types to anonymize."
    )

    def anonymize_messages(self, messages: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
        """`messages` with `content` anonymized under the policy; findings counted by type."""
        if self.message_policy == "keep" or messages.is_empty():
            return messages, {}
        if self.message_policy == "pseudonymize" and not self.pseudonym_key:
            raise ValueError("message_policy=pseudonymize needs PRIVACY_PSEUDONYM_KEY")
        key = self.pseudonym_key.encode() if self.message_policy == "pseudonymize" else None
        content, counts = anonymize(messages["content"], key=key, kinds=tuple(self.types))
        return messages.with_columns(content.alias("content")), dict(counts)
