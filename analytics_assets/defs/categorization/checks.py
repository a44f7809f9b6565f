"""Whether the deployment's taxonomy fits its conversations (WARN)."""

from datetime import date, timedelta

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from analytics_assets import tables
from analytics_assets.categorization.fit import (
    CONFIGURED,
    MIN_CONVERSATIONS,
    OTHER_SHARE_WARN,
    alternatives,
    fit_verdict,
    other_share,
    other_shares_on_a_sample,
)
from analytics_assets.defs.check_evaluations import CheckEvents, evaluations_per_day
from analytics_assets.defs.partitions import daily_partitions, days_in
from analytics_assets.transforms.records import newest_copies

LAKE, CATEGORIZATION = "lake", "categorization"


@asset_check(
    asset=tables.CONVERSATION_CATEGORIES,
    partitions_def=daily_partitions,
    required_resource_keys={LAKE, CATEGORIZATION},
    description="The taxonomy fits the conversations: WARN when more than half of a day's "
    "conversations are `other`, naming the shipped taxonomy that leaves fewer of a sample of "
    "them `other` (e.g. `assistant` for a general-purpose assistant's chats).",
)
def taxonomy_fits_the_conversations(
    context: AssetCheckExecutionContext, conversation_categories: pl.DataFrame
) -> CheckEvents:
    categorization = getattr(context.resources, CATEGORIZATION)
    taxonomy = categorization.taxonomy()
    days = days_in(context.partition_time_window)
    of_day = {day: conversation_categories.filter(pl.col("day") == day) for day in days}
    unfit = [
        day
        for day, categories in of_day.items()
        if categories.height >= MIN_CONVERSATIONS
        and other_share(categories, taxonomy) > OTHER_SHARE_WARN
    ]
    # The other taxonomies are tried on one day of the run only, its last unfit one: a
    # suggestion needs no more, and a backfill of chats the taxonomy does not fit would
    # otherwise categorize every day twice.
    compared: date | None = unfit[-1] if unfit else None
    on_sample, sampled = {}, 0
    if compared is not None:
        lake = getattr(context.resources, LAKE).lake()
        both_days = [compared, compared + timedelta(days=1)]
        headers, _ = lake.read_days(tables.CONVERSATION_HEADERS, [compared])
        messages, _ = lake.read_days(tables.CONVERSATION_MESSAGES, both_days)
        # The day's, as conversation_categories reads them.
        translations, _ = lake.read_days(tables.CONVERSATION_TRANSLATIONS, [compared])
        if headers is not None and messages is not None:
            on_sample, sampled = other_shares_on_a_sample(
                headers,
                newest_copies(messages),
                {CONFIGURED: taxonomy, **alternatives(categorization.taxonomy_path)},
                threshold=categorization.threshold,
                translations=translations,
            )

    def result_of(partition_key: str) -> AssetCheckResult:
        day = date.fromisoformat(partition_key)
        verdict = fit_verdict(
            of_day.get(day, conversation_categories.clear()),
            taxonomy,
            on_sample if day == compared else None,
            sampled,
        )
        return AssetCheckResult(
            passed=verdict.passed, severity=AssetCheckSeverity.WARN, metadata=verdict.metadata
        )

    yield from evaluations_per_day(context, result_of)
