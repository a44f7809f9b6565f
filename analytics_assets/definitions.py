"""The one Definitions object of the code location."""

from __future__ import annotations

from typing import Any

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from analytics_assets.defs.analytics import assets as analytics_assets
from analytics_assets.defs.analytics import checks as analytics_checks
from analytics_assets.defs.categorization import assets as categorization_assets
from analytics_assets.defs.ingestion import assets as ingestion_assets
from analytics_assets.defs.ingestion import checks as ingestion_checks
from analytics_assets.defs.ingestion.jobs import (
    daily_ingestion_schedule,
    discovery_job,
    ingestion_job,
    monthly_report_job,
    monthly_report_schedule,
    train_heads_job,
    weekly_report_job,
    weekly_report_schedule,
)
from analytics_assets.defs.ingestion.sensors import (
    nocodb_changes_sensor,
    nocodb_reconciliation_sensor,
)
from analytics_assets.defs.privacy import assets as privacy_assets
from analytics_assets.defs.privacy.checks import privacy_checks
from analytics_assets.defs.privacy.jobs import (
    daily_report_job,
    erase_user_job,
    erasure_report_rebuild_sensor,
    privacy_retention_job,
    privacy_retention_schedule,
)
from analytics_assets.defs.translation import assets as translation_assets
from analytics_assets.deployments import current_deployment, resources_for


def build_definitions(
    deployment: str | None = None, resources: dict[str, Any] | None = None
) -> Definitions:
    """The code location's definitions; `resources` replaces some of the deployment's."""
    return Definitions(
        assets=load_assets_from_modules(
            [
                ingestion_assets,
                categorization_assets,
                translation_assets,
                analytics_assets,
                privacy_assets,
            ]
        ),
        # Includes the freshness checks built in the checks module.
        asset_checks=[
            *load_asset_checks_from_modules([ingestion_checks, analytics_checks]),
            *privacy_checks,
        ],
        sensors=[
            analytics_checks.freshness_sensor,
            nocodb_changes_sensor,
            nocodb_reconciliation_sensor,
            erasure_report_rebuild_sensor,
        ],
        jobs=[
            ingestion_job,
            weekly_report_job,
            monthly_report_job,
            train_heads_job,
            discovery_job,
            daily_report_job,
            erase_user_job,
            privacy_retention_job,
        ],
        schedules=[
            daily_ingestion_schedule,
            weekly_report_schedule,
            monthly_report_schedule,
            privacy_retention_schedule,
        ],
        resources={**resources_for(deployment or current_deployment()), **(resources or {})},
    )


defs = build_definitions()
