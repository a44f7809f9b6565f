"""The code location: each domain's definitions merged, the daily job over all of them,
and the deployment's resources.

Each `defs/<domain>/definitions.py` owns its assets, checks, jobs, schedules and sensors;
this module only merges them. The daily job is built here because it spans domains: it
takes every daily-partitioned asset (see `defs/ingestion/jobs.py`).
"""

from __future__ import annotations

from typing import Any

from dagster import Definitions, MetadataValue

from analytics_assets.defs.alerts.definitions import build_alert_definitions
from analytics_assets.defs.analytics import definitions as analytics
from analytics_assets.defs.categorization import definitions as categorization
from analytics_assets.defs.ingestion import definitions as ingestion
from analytics_assets.defs.ingestion.jobs import daily_job_definitions
from analytics_assets.defs.operations import definitions as operations
from analytics_assets.defs.privacy import definitions as privacy
from analytics_assets.defs.storage.mirror import mirror_definitions
from analytics_assets.defs.translation import definitions as translation
from analytics_assets.defs.webhooks import definitions as webhooks
from analytics_assets.deployments import executor_for, resources_for
from analytics_assets.settings import Settings, get_settings

# The domains' modules, not their Definitions: Dagster loads a module holding exactly one.
DOMAINS = tuple(
    domain.defs
    for domain in (ingestion, categorization, translation, analytics, privacy, operations, webhooks)
)


def build_definitions(
    settings: Settings | None = None, resources: dict[str, Any] | None = None
) -> Definitions:
    """The code location's definitions for `settings` (the process's, read from the
    environment, if None); `resources` replaces some of the deployment's."""
    settings = settings or get_settings()
    domains = Definitions.merge(*DOMAINS)
    # After every mirrored daily asset, so built from the domains' assets, like the job.
    mirror = mirror_definitions(domains.assets or [])
    deployment = Definitions(
        resources={**resources_for(settings), **(resources or {})},
        executor=executor_for(settings),
        # The resolved configuration, secrets shown only as set or not, for the UI.
        metadata={"settings": MetadataValue.json(settings.public_view())},
    )
    return Definitions.merge(
        domains,
        mirror,
        daily_job_definitions([*(domains.assets or []), *(mirror.assets or [])]),
        # Alerts are built from this settings object (the sinks are off while unset).
        build_alert_definitions(settings),
        deployment,
    )


defs = build_definitions()
