"""One router per resource; `analytics_assets.api.app.create_app` includes them in order."""
