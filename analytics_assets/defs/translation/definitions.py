"""Translation's definitions: languages per conversation, translations and their errors."""

from dagster import Definitions, load_assets_from_modules

from analytics_assets.defs.translation import assets

defs = Definitions(assets=load_assets_from_modules([assets]))
