"""The API of the current deployment (its MongoDB): `uvicorn analytics_assets.api.main:app`,
or `analytics-assets api`."""

from analytics_assets.api.app import create_app
from analytics_assets.deployments import current_deployment, mongo_for, privacy_for

app = create_app(
    mongo_for(current_deployment()).db,
    user_pseudonym=privacy_for(current_deployment()).pseudonymizer(),
)
