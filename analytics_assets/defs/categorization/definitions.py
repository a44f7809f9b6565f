"""Categorization's definitions: categories and message signals (daily), whether the
taxonomy fits the conversations, and the model tier's heads and topic discovery with their
own jobs."""

from dagster import Definitions, load_asset_checks_from_modules, load_assets_from_modules

from analytics_assets.defs.categorization import assets, checks
from analytics_assets.defs.categorization.jobs import discovery_job, train_heads_job

defs = Definitions(
    assets=load_assets_from_modules([assets]),
    asset_checks=load_asset_checks_from_modules([checks]),
    jobs=[train_heads_job, discovery_job],
)
