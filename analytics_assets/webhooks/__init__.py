"""Webhooks: subscriptions to events (reports ready, checks failed, erasures done, syncs
completed), signed deliveries retried with backoff, dead letters and a delivery log
(pure: no Dagster; the sensor that feeds them lives in defs/webhooks)."""
