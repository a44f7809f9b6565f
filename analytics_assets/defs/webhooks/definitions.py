"""Webhooks' definitions: the sensor that turns finished runs into events and delivers them
to the subscriptions (managed with `analytics-assets webhooks` and the API's /webhooks)."""

from dagster import Definitions

from analytics_assets.defs.webhooks.sensors import webhook_sensor

defs = Definitions(sensors=[webhook_sensor])
