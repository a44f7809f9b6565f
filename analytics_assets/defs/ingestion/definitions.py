"""Ingestion's definitions: raw pages to validated records and conversations, their key
checks, and the sync sensors that request the daily job."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from analytics_assets.defs.ingestion import assets, checks
from analytics_assets.defs.ingestion.sensors import (
    nocodb_changes_sensor,
    nocodb_reconciliation_sensor,
)
from analytics_assets.defs.storage.leases import lease_release_sensors

defs = Definitions(
    assets=load_assets_from_modules([assets]),
    asset_checks=load_asset_checks_from_modules([checks]),
    sensors=[nocodb_changes_sensor, nocodb_reconciliation_sensor, *lease_release_sensors],
)
