"""The API of the current deployment (its MongoDB): `uvicorn analytics_assets.api.main:app`,
or `analytics-assets api`. Built from the settings alone: serving it loads no Dagster."""

from analytics_assets.api.app import create_app
from analytics_assets.privacy.keys import pseudonymizer
from analytics_assets.settings import get_settings
from analytics_assets.storage.connection import MongoConnection

_settings = get_settings()
app = create_app(
    MongoConnection.from_settings(_settings).db, user_pseudonym=pseudonymizer(_settings)
)
