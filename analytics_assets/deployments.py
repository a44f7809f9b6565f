"""Which resources each deployment uses, decided in this one place.

- `local` (the default): the bundled sample export, a lake in `.local/lake`; set NOCODB_URL
  and NOCODB_API_TOKEN to read a real NocoDB instead.
- `prod`: a real NocoDB and an `s3://` lake, everything from environment variables.
Secrets are passed as `EnvVar`s, so Dagster resolves them at run time and never shows them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import EnvVar
from dagster_aws.s3 import S3Resource

from analytics_assets.defs.categorization.resources import CategorizationResource
from analytics_assets.defs.ingestion.resources import (
    ExportSourceResource,
    NocoDBSourceResource,
    RecordSourceResource,
    SyncSettings,
)
from analytics_assets.defs.lake.io_manager import ParquetLakeIOManager
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.storage.io_managers import LakeAndMongoIOManager
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.defs.translation.resources import TranslationResource
from analytics_assets.sources.schema import SourceSchema
from analytics_assets.storage.placement import LAKE_AND_MONGO_IO_MANAGER, LAKE_IO_MANAGER

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS = ("local", "prod")


def local_dir() -> Path:
    return Path(os.environ.get("ANALYTICS_LOCAL_DIR", PROJECT_ROOT / ".local"))


def source_schema_from_env() -> SourceSchema:
    """Table names from NOCODB_*_TABLE; renamed fields as JSON in NOCODB_FIELD_MAP, e.g.
    {"messages": {"content": "text"}, "conversations": {"user_id": "customer"}}."""
    field_map: dict[str, dict[str, str]] = json.loads(os.environ.get("NOCODB_FIELD_MAP", "{}"))
    return SourceSchema(
        conversations_table=os.environ.get("NOCODB_CONVERSATIONS_TABLE", "conversations"),
        messages_table=os.environ.get("NOCODB_MESSAGES_TABLE", "messages"),
        conversation_fields=field_map.get("conversations", {}),
        message_fields=field_map.get("messages", {}),
    )


def nocodb_source_from_env() -> NocoDBSourceResource:
    return NocoDBSourceResource(
        url=EnvVar("NOCODB_URL"),
        api_token=EnvVar("NOCODB_API_TOKEN"),
        base_id=os.environ.get("NOCODB_BASE_ID"),
        requests_per_second=float(os.environ.get("NOCODB_REQUESTS_PER_SECOND", "5")),
        source_schema=source_schema_from_env(),
    )


def record_source_for(deployment: str) -> RecordSourceResource:
    if deployment == "prod" or os.environ.get("NOCODB_URL"):
        return nocodb_source_from_env()
    export_dir = os.environ.get("ANALYTICS_EXPORT_DIR")
    return ExportSourceResource(
        export_dir=export_dir or str(local_dir() / "sample_export"),
        # Only the bundled sample is generated; a team's own export folder is never written.
        generate_sample_if_missing=export_dir is None,
        source_schema=source_schema_from_env(),
    )


def lake_settings_for(deployment: str) -> dict[str, Any]:
    if deployment == "prod":
        base_url: Any = EnvVar("ANALYTICS_LAKE_URL")
    else:
        base_url = os.environ.get("ANALYTICS_LAKE_URL", str(local_dir() / "lake"))
    # Keys come from the standard AWS chain (env, profile, role); only where to connect here.
    s3 = S3Resource(
        endpoint_url=os.environ.get("ANALYTICS_S3_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION"),
    )
    return {"base_url": base_url, "s3": s3}


def mongo_for(deployment: str) -> MongoResource:
    database = os.environ.get("MONGODB_DATABASE", "analytics")
    if deployment == "prod" or os.environ.get("MONGODB_URI"):
        return MongoResource(uri=EnvVar("MONGODB_URI"), database=database)
    # The embedded default: nx-27017 on loopback, its files in .local/mongo.
    return MongoResource(
        embedded_data_dir=str(local_dir() / "mongo"),
        embedded_port=int(os.environ.get("ANALYTICS_EMBEDDED_MONGO_PORT", "27018")),
        database=database,
    )


def storage_resources(lake_settings: dict[str, Any], mongo: MongoResource) -> dict[str, Any]:
    """The two IO managers of analytics_assets/storage/placement.py, on shared settings."""
    return {
        LAKE_IO_MANAGER: ParquetLakeIOManager(**lake_settings),
        LAKE_AND_MONGO_IO_MANAGER: LakeAndMongoIOManager(**lake_settings, mongo=mongo),
        # The same database for the steps that work on collections directly (retention,
        # erasure, the privacy checks).
        "mongo": mongo,
    }


def categorization_for(deployment: str) -> CategorizationResource:
    return CategorizationResource(
        tier=os.environ.get("ANALYTICS_CATEGORIZATION_TIER", "rules"),
        device=os.environ.get("ANALYTICS_DEVICE", "auto"),
        heads_dir=os.environ.get("ANALYTICS_HEADS_DIR", str(local_dir() / "heads")),
        feedback_table=os.environ.get("NOCODB_FEEDBACK_TABLE"),
        # Locally, the sample export carries corrections for every fifth conversation.
        feedback_file=os.environ.get(
            "ANALYTICS_FEEDBACK_FILE", str(local_dir() / "sample_export" / "category_feedback.json")
        ),
    )


def sync_settings_for(deployment: str) -> SyncSettings:
    """The incremental sync's settings (defaults suit NocoDB Cloud's clock and limits)."""
    return SyncSettings(
        overlap_minutes=float(os.environ.get("ANALYTICS_SYNC_OVERLAP_MINUTES", "5")),
        bootstrap=os.environ.get("ANALYTICS_SYNC_BOOTSTRAP", "latest"),
        reconcile_days=int(os.environ.get("ANALYTICS_RECONCILE_DAYS", "14")),
        deletions=os.environ.get("ANALYTICS_SOURCE_DELETIONS", "remove"),
    )


def translation_for(deployment: str) -> TranslationResource:
    """TRANSLATOR=none|source|http|local; targets as TRANSLATION_TARGETS=en,de."""
    api_key = EnvVar("TRANSLATION_HTTP_API_KEY") if os.environ.get(
        "TRANSLATION_HTTP_API_KEY") else None  # fmt: skip
    return TranslationResource(
        translator=os.environ.get("TRANSLATOR", "none"),
        target_languages=os.environ.get("TRANSLATION_TARGETS", "en").split(","),
        http_url=os.environ.get("TRANSLATION_HTTP_URL"),
        http_api_key=api_key,
        local_model_dir=os.environ.get("TRANSLATION_MODEL_DIR"),
        device=os.environ.get("ANALYTICS_DEVICE", "auto"),
        source_table=os.environ.get("NOCODB_TRANSLATIONS_TABLE", "message_translations"),
        reference_table=os.environ.get("NOCODB_REFERENCE_TRANSLATIONS_TABLE"),
    )


def privacy_for(deployment: str) -> PrivacyResource:
    """PRIVACY_DEFAULT_POLICY=redact|pseudonymize, PRIVACY_POLICIES and PRIVACY_RETENTION_DAYS
    as JSON per table, PRIVACY_RESTRICTED_TABLES=a,b, PRIVACY_KEEP_USER_MAPPING=1. The HMAC
    key: PRIVACY_PSEUDONYM_KEY (an EnvVar, required in prod); locally a random key created
    once in .local/pseudonym.key."""
    key = EnvVar("PRIVACY_PSEUDONYM_KEY") if os.environ.get("PRIVACY_PSEUDONYM_KEY") else None
    if deployment == "prod":
        key = EnvVar("PRIVACY_PSEUDONYM_KEY")
    restricted = os.environ.get("PRIVACY_RESTRICTED_TABLES", "")
    return PrivacyResource(
        default_policy=os.environ.get("PRIVACY_DEFAULT_POLICY", "redact"),
        policies=json.loads(os.environ.get("PRIVACY_POLICIES", "{}")),
        restricted_tables=[name for name in restricted.split(",") if name],
        pseudonym_key=key,
        pseudonym_key_file=None if key else str(local_dir() / "pseudonym.key"),
        keep_user_mapping=os.environ.get("PRIVACY_KEEP_USER_MAPPING", "") in ("1", "true"),
        retention_days=json.loads(os.environ.get("PRIVACY_RETENTION_DAYS", "{}")),
    )


def resources_for(deployment: str) -> dict[str, Any]:
    if deployment not in DEPLOYMENTS:
        raise ValueError(f"ANALYTICS_DEPLOYMENT must be one of {DEPLOYMENTS}, got {deployment!r}")
    return {
        "record_source": record_source_for(deployment),
        "categorization": categorization_for(deployment),
        "sync_settings": sync_settings_for(deployment),
        "translation": translation_for(deployment),
        "privacy": privacy_for(deployment),
        **storage_resources(lake_settings_for(deployment), mongo_for(deployment)),
    }


def current_deployment() -> str:
    return os.environ.get("ANALYTICS_DEPLOYMENT", "local")
