"""Dagster wiring, one folder per domain; the logic it calls lives in pure modules."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Single-run backfills, partitioned checks and the partition mapping's tolerance of future
# days are marked beta/preview; we pin Dagster, so the warnings only add noise.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
