"""Dagster wiring, one folder per domain; the logic it calls lives in pure modules."""

import warnings

from dagster import BetaWarning, PreviewWarning, SupersessionWarning

# Single-run backfills, partitioned checks and the partition mapping's tolerance of future
# days are marked beta/preview, and freshness checks superseded by FreshnessPolicy (whose
# daily-partition deadline we do not have yet); we pin Dagster, so these are only noise.
for category in (BetaWarning, PreviewWarning, SupersessionWarning):
    warnings.filterwarnings("ignore", category=category)
