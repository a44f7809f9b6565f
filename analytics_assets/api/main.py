"""The API of the current deployment (its MongoDB): `uvicorn analytics_assets.api.main:app`,
or `analytics-assets api`. Built from the settings alone: serving it loads no Dagster.

/ready asks `MongoConnection.ping`, which never starts the embedded server: readiness has
no side effects. The access log goes through `security.AccessLogRedactor` (installed here,
after uvicorn has configured logging, so its configuration does not drop the filter)."""

from analytics_assets.api.app import create_app
from analytics_assets.api.security import redact_access_logs
from analytics_assets.settings import get_settings
from analytics_assets.storage.connection import MongoConnection

_connection = MongoConnection.from_settings(get_settings())
app = create_app(_connection.db, ready=_connection.ping)
redact_access_logs(app)
