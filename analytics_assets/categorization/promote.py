"""Promoting a discovered cluster into the taxonomy, so that `other` shrinks over time.

`topic_discovery` names each cluster of `other` conversations from its most distinctive
terms; `analytics-assets promote-topic DAY CLUSTER` copies the deployment's taxonomy with a
new topic built from that cluster (its terms as keywords, its examples as the model tier's
examples), under a new version. Pointing ANALYTICS_TAXONOMY at the copy and backfilling
`conversation_categories` re-labels history with it; each row records the taxonomy version.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from datetime import date
from pathlib import Path

import yaml

from analytics_assets.categorization.common_words import common_words
from analytics_assets.categorization.taxonomy import (
    SHIPPED_TAXONOMIES,
    canonical_label,
    parse_taxonomy,
    read_taxonomy_document,
)

NAME_TERMS = 2


def cluster_name(terms: list[str], cluster: int) -> str:
    """A label-shaped name from the cluster's two most distinctive terms
    (`delivery_parcel`); `cluster_3` when it has none."""
    words = []
    for term in terms[:NAME_TERMS]:
        slug = re.sub(r"[^\w]+", "_", unicodedata.normalize("NFKC", term).lower()).strip("_")
        if slug:
            words.append(slug)
    return "_".join(words) or f"cluster_{cluster}"


def taxonomy_document(path: str | None) -> dict:
    """The YAML document of a shipped taxonomy (by name) or of a file."""
    chosen = SHIPPED_TAXONOMIES.get(path or "support") or Path(path)
    return read_taxonomy_document(Path(chosen).read_text(encoding="utf-8"))


def promote(
    document: dict,
    *,
    name: str,
    terms: list[str],
    examples: list[str],
    day: date,
) -> dict:
    """A copy of the taxonomy document with the new topic; refuses a name it already has
    (however it is spelled) and checks that the result still parses."""
    label = canonical_label(name)
    if not label:
        raise ValueError(f"{name!r} is no topic name: it has no letters or digits")
    if label in {canonical_label(t) for t in (document.get("topics") or {})}:
        raise ValueError(f"the taxonomy already has a topic {label!r}")
    fallback = canonical_label((document.get("fallbacks") or {}).get("topic") or "other")
    if label == fallback:
        # A head sure of the fallback is an abstention; as a topic, it would be a label.
        raise ValueError(f"{label!r} is the taxonomy's fallback topic, not one to promote")
    promoted = copy.deepcopy(document)
    promoted.setdefault("topics", {})[label] = {
        "description": f"Promoted from topic_discovery on {day.isoformat()}: "
        f"{', '.join(terms[:6])}.",
        "examples": list(examples),
        # Again here: a cluster table written before a word was on the list still has it.
        "keywords": [t for t in terms if len(t) >= 3 and t.lower() not in common_words()],
    }
    promoted["version"] = f"{document.get('version', 'unversioned')}+{label}"
    parse_taxonomy(promoted)
    return promoted


def write_taxonomy(document: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100),
        encoding="utf-8",
    )
