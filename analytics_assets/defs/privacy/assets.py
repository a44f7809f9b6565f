"""Retention as an asset: materializing it applies the deployment's retention."""

from datetime import UTC, datetime

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.defs.storage.placement import code_location_mirrors
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.privacy.retention import apply_retention


@asset(
    group_name="privacy",
    kinds={"parquet", "mongodb"},
    description="Each table keeps its configured number of days (PRIVACY_RETENTION_DAYS): "
    "older lake days are dropped, older MongoDB documents deleted, TTL indexes kept in step.",
)
def privacy_retention(
    context: AssetExecutionContext,
    privacy: PrivacyResource,
    mongo: MongoResource,
    lake: LakeResource,
) -> MaterializeResult:
    today = datetime.now(UTC).date()
    result = apply_retention(
        lake.lake(), mongo.db(), privacy.retention_days, today, code_location_mirrors()
    )
    if not privacy.retention_days:
        context.log.info("no retention configured: every table keeps every day")
    return MaterializeResult(
        metadata={
            "retention_days": MetadataValue.json(privacy.retention_days),
            "cutoff": MetadataValue.json(result.cutoff),
            "lake_days_removed": MetadataValue.json(result.lake_days_removed),
            "mongo_documents_removed": MetadataValue.json(result.mongo_documents_removed),
            "ttl_indexes": MetadataValue.json(result.ttl_indexes),
        }
    )
