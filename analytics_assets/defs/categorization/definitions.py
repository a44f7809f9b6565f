"""Categorization's definitions: categories and message signals (daily), and the model
tier's heads and topic discovery with their own jobs."""

from dagster import Definitions, load_assets_from_modules

from analytics_assets.defs.categorization import assets
from analytics_assets.defs.categorization.jobs import discovery_job, train_heads_job

defs = Definitions(assets=load_assets_from_modules([assets]), jobs=[train_heads_job, discovery_job])
