"""Privacy's definitions: retention, the right to erasure and the report rebuilds it leads
to, and the checks that no raw PII or raw user id reached an analytics table."""

from dagster import Definitions, load_assets_from_modules

from analytics_assets.defs.privacy import assets
from analytics_assets.defs.privacy.checks import privacy_checks
from analytics_assets.defs.privacy.jobs import (
    erase_user_job,
    erasure_period_rebuild_sensor,
    erasure_report_rebuild_sensor,
    erasure_unfinished_rebuild_sensor,
    privacy_retention_job,
    privacy_retention_schedule,
)

defs = Definitions(
    assets=load_assets_from_modules([assets]),
    asset_checks=privacy_checks,
    sensors=[
        erasure_report_rebuild_sensor,
        erasure_period_rebuild_sensor,
        erasure_unfinished_rebuild_sensor,
    ],
    jobs=[erase_user_job, privacy_retention_job],
    schedules=[privacy_retention_schedule],
)
