"""Analytics' definitions: scores, user analytics, the daily, weekly and monthly reports,
their checks (volume, error rate, drift, reconciliation, freshness) and report jobs."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from analytics_assets.defs.analytics import assets, checks, sensors
from analytics_assets.defs.analytics.jobs import (
    REPORT_REBUILD_JOBS,
    monthly_report_schedule,
    weekly_report_schedule,
)

defs = Definitions(
    assets=load_assets_from_modules([assets]),
    # Includes the freshness checks built in the checks module.
    asset_checks=load_asset_checks_from_modules([checks]),
    sensors=[checks.freshness_sensor, sensors.reports_after_a_day_changed],
    jobs=list(REPORT_REBUILD_JOBS),
    schedules=[weekly_report_schedule, monthly_report_schedule],
)
