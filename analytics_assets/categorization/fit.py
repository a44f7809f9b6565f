"""Whether a taxonomy fits a deployment's conversations: the share of them it leaves
`other`, and what it and the other shipped taxonomies leave of a sample of the same
conversations, measured alike.

The support taxonomy, the default, left 81 % of real open-domain assistant chats `other`;
the assistant taxonomy fits them (`docs/categorization.md`). Nothing told a team which one
their conversations needed. Pure: no Dagster (the check is in `defs/categorization/`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import polars as pl

from analytics_assets.categorization.conversations import categorize_conversations
from analytics_assets.categorization.taxonomy import SHIPPED_TAXONOMIES, Taxonomy, load_taxonomy

# A day whose conversations are more than half `other` has no topic for most of them.
OTHER_SHARE_WARN = 0.5
# Fewer conversations than this in a day say nothing about the taxonomy.
MIN_CONVERSATIONS = 20
# Conversations of the day another taxonomy is tried on (rules tier: about 0.1 s).
SAMPLE_CONVERSATIONS = 200
# Another taxonomy is suggested only when it leaves this much less `other`.
BETTER_BY = 0.15
# The deployment's own taxonomy among those measured on a sample.
CONFIGURED = "configured"


@dataclass(frozen=True)
class FitVerdict:
    passed: bool
    metadata: dict


def other_share(categories: pl.DataFrame, taxonomy: Taxonomy) -> float:
    """The share of conversations whose topic is the taxonomy's fallback."""
    if not categories.height:
        return 0.0
    fallback = taxonomy.fallbacks.get("topic", "other")
    return categories.filter(pl.col("topic") == fallback).height / categories.height


def alternatives(configured: str | None) -> dict[str, Taxonomy]:
    """The shipped taxonomies other than the deployment's (both, for a taxonomy file)."""
    current = configured or "support"
    return {name: load_taxonomy(name) for name in SHIPPED_TAXONOMIES if name != current}


def sample_conversations(headers: pl.DataFrame, size: int = SAMPLE_CONVERSATIONS) -> pl.DataFrame:
    """`size` of the day's conversations, the same ones on every run (by a hash of the id)."""

    def rank(conversation_id: str) -> str:
        return hashlib.sha256(conversation_id.encode()).hexdigest()

    ranked = headers.with_columns(
        pl.col("conversation_id").map_elements(rank, return_dtype=pl.String).alias("_rank")
    )
    return ranked.sort("_rank").head(size).drop("_rank")


def other_shares_on_a_sample(
    headers: pl.DataFrame,
    messages: pl.DataFrame,
    taxonomies: dict[str, Taxonomy],
    *,
    threshold: float,
    translations: pl.DataFrame | None = None,
) -> tuple[dict[str, float], int]:
    """What each taxonomy leaves `other` of the same sample of the day's conversations, all
    the same way (rules tier, with the translations the deployment has): the deployment's
    own share may come from the model tier, and a comparison must not measure the tier.
    `messages`: the day's and the next day's (a conversation goes on past midnight), newest
    copies. Returns the shares and the sample's size."""
    sample = sample_conversations(headers)
    if not sample.height:
        return {}, 0
    ids = sample.select("conversation_id")
    their_messages = messages.join(ids, on="conversation_id", how="semi")
    shares = {
        name: round(
            other_share(
                categorize_conversations(
                    sample,
                    their_messages,
                    taxonomy,
                    threshold=threshold,
                    translations=translations,
                ),
                taxonomy,
            ),
            4,
        )
        for name, taxonomy in taxonomies.items()
    }
    return shares, sample.height


def fit_verdict(
    categories: pl.DataFrame,
    taxonomy: Taxonomy,
    on_sample: dict[str, float] | None = None,
    sampled: int = 0,
) -> FitVerdict:
    """Passed unless more than `OTHER_SHARE_WARN` of at least `MIN_CONVERSATIONS` are
    `other`. `on_sample`: what the deployment's taxonomy (`CONFIGURED`) and the others
    leave `other` of one sample, measured alike; the best other is suggested where it
    leaves `BETTER_BY` less than the deployment's on that sample."""
    share = other_share(categories, taxonomy)
    metadata: dict = {
        "conversations": categories.height,
        "other_share": round(share, 4),
        "warn_above": OTHER_SHARE_WARN,
    }
    if categories.height < MIN_CONVERSATIONS:
        return FitVerdict(True, {**metadata, "note": "too few conversations to judge"})
    others = {name: value for name, value in (on_sample or {}).items() if name != CONFIGURED}
    if others and CONFIGURED in on_sample:
        now = on_sample[CONFIGURED]
        metadata["sampled_conversations"] = sampled
        metadata["other_share_on_sample"] = now
        metadata |= {f"other_share_with_{name}": value for name, value in others.items()}
        best = min(others, key=others.get)
        if others[best] <= now - BETTER_BY:
            metadata["suggestion"] = (
                f"ANALYTICS_TAXONOMY={best} leaves {others[best]:.0%} of {sampled} of this "
                f"day's conversations `other`, against {now:.0%} with this deployment's "
                "taxonomy (both by the rules tier); then backfill conversation_categories"
            )
    return FitVerdict(share <= OTHER_SHARE_WARN, metadata)
