"""Which translator a deployment uses, and into which languages."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from analytics_assets.defs.ingestion.resources import RecordSourceResource
from analytics_assets.translation.translators import (
    HttpTranslator,
    LocalSeq2SeqTranslator,
    SourceTranslator,
    Translator,
)


class TranslationResource(ConfigurableResource):
    translator: Literal["none", "source", "http", "local"] = Field(
        default="none", description="Where translations come from; 'none' detects only."
    )
    target_languages: list[str] = Field(
        default_factory=lambda: ["en"], description="The languages the team reads."
    )
    http_url: str | None = Field(default=None, description="LibreTranslate-compatible URL.")
    http_api_key: str | None = Field(default=None, description="Its API key (EnvVar).")
    timeout_s: float = Field(default=30.0, description="Per request (http).")
    max_attempts: int = Field(default=4, description="Attempts per batch before it is recorded.")
    local_model_dir: str | None = Field(
        default=None, description="Folder of <src>-<tgt> seq2seq model folders (local)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto")
    source_table: str = Field(
        default="message_translations",
        description="NocoDB table of stored translations: message_id, language, text, and "
        "conversation_id where message ids repeat across conversations (source).",
    )

    reference_table: str | None = Field(
        default=None,
        description="NocoDB table of reference translations (message_id, language, text) to "
        "score http/local translations against with chrF; None: no references.",
    )

    def _stored(self, record_source: RecordSourceResource, table_name: str) -> dict:
        """(message_id, language) -> text from a side table of the record source, or
        (conversation_id, message_id, language) -> text where the table has a
        `conversation_id` column (a message id is one message within its conversation)."""
        fields = ["conversation_id", "message_id", "language", "text"]
        with record_source.open() as source:
            rows = source.read_table(table_name, fields)
        if rows.is_empty():
            return {}
        by_conversation = "conversation_id" in rows.columns
        return {
            ((str(row["conversation_id"]),) if by_conversation else ())
            + (str(row["message_id"]), str(row["language"])): row["text"]
            for row in rows.iter_rows(named=True)
            if row.get("message_id")
            and row.get("language")
            and row.get("text")
            and (not by_conversation or row.get("conversation_id"))
        }

    def references(self, record_source: RecordSourceResource) -> dict[tuple[str, ...], str]:
        return self._stored(record_source, self.reference_table) if self.reference_table else {}

    def build(self, record_source: RecordSourceResource) -> Translator | None:
        if self.translator == "none":
            return None
        if self.translator == "http":
            if not self.http_url:
                raise ValueError("translator=http needs http_url (TRANSLATION_HTTP_URL)")
            return HttpTranslator(
                self.http_url,
                api_key=self.http_api_key,
                timeout_s=self.timeout_s,
                max_attempts=self.max_attempts,
            )
        if self.translator == "local":
            if not self.local_model_dir:
                raise ValueError("translator=local needs local_model_dir (TRANSLATION_MODEL_DIR)")
            return LocalSeq2SeqTranslator(self.local_model_dir, device=self.device)
        return SourceTranslator(self._stored(record_source, self.source_table))
