"""Discovery: conversations that land in `other`, clustered on their embeddings, each cluster
shown with its size, its most distinctive terms and examples, so a team sees new topics
before it names them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl

from analytics_assets.categorization.common_words import common_words
from analytics_assets.categorization.promote import cluster_name

# A letter, then letters or combining marks: Devanagari's and other scripts' vowel signs are
# marks, and a letters-only pattern cut their words into fragments ("सकता" -> "सकत").
# Chinese and Japanese have no spaces: a run of their characters is one term.
_WORD = r"\p{L}[\p{L}\p{M}]{2,}"
CLUSTER_SCHEMA: dict[str, pl.DataType] = {
    "cluster": pl.Int32(),
    # A label-shaped name from the two most distinctive terms: what `promote-topic` uses.
    "name": pl.String(),
    "size": pl.UInt32(),
    "terms": pl.List(pl.String()),
    "examples": pl.List(pl.String()),
}


def kmeans(vectors: np.ndarray, k: int, *, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """Spherical k-means (cosine) with k-means++ seeding; returns each vector's cluster."""
    rng = np.random.default_rng(seed)
    centers = [vectors[rng.integers(len(vectors))]]
    for _ in range(1, k):
        distance = 1 - np.max(vectors @ np.stack(centers).T, axis=1)
        weights = np.clip(distance, 0, None) ** 2
        total = weights.sum()
        pick = (
            rng.choice(len(vectors), p=weights / total) if total > 0 else rng.integers(len(vectors))
        )
        centers.append(vectors[pick])
    center_matrix = np.stack(centers)
    assignment = np.zeros(len(vectors), dtype=int)
    for _ in range(iterations):
        new_assignment = np.argmax(vectors @ center_matrix.T, axis=1)
        if np.array_equal(new_assignment, assignment) and _ > 0:
            break
        assignment = new_assignment
        for cluster in range(k):
            members = vectors[assignment == cluster]
            if len(members):
                mean = members.mean(axis=0)
                center_matrix[cluster] = mean / (np.linalg.norm(mean) or 1.0)
    return assignment


def terms_of_texts(texts: list[str]) -> list[set[str]]:
    """Each text's distinct terms: words of three or more letters, lower-cased, common words
    (`common_words`) left out."""
    common = common_words()
    words = pl.Series(texts, dtype=pl.String).fill_null("").str.to_lowercase()
    return [
        {word for word in found if word not in common}
        for found in words.str.extract_all(_WORD).to_list()
    ]


def distinctive_terms(
    cluster_terms: list[set[str]], overall: Counter, all_texts: int, top: int = 6
) -> list[str]:
    """Terms frequent in the cluster and rare elsewhere (a smoothed lift, weighted by count).
    `cluster_terms`: each cluster text's terms (`terms_of_texts`); `overall`: how many of
    all `all_texts` texts hold each term."""
    inside = Counter(term for terms in cluster_terms for term in terms)
    size = len(cluster_terms)
    scores = {
        term: count * (count / size) / ((overall[term] + 1) / (all_texts + 1))
        for term, count in inside.items()
        if count >= 2 or size < 4
    }
    return [term for term, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]]


def discover(texts: list[str], vectors: np.ndarray, *, max_clusters: int = 8) -> pl.DataFrame:
    """Clusters the texts; k grows like sqrt(n / 2) (a common rule of thumb), capped."""
    if not texts:
        return pl.DataFrame(schema=CLUSTER_SCHEMA)
    k = max(1, min(max_clusters, len(texts), round((len(texts) / 2) ** 0.5)))
    assignment = kmeans(vectors, k)
    # Each text's terms, once: the counts over all texts and each cluster's come from them.
    terms_of = terms_of_texts(texts)
    overall = Counter(term for terms in terms_of for term in terms)
    rows = []
    for cluster in range(k):
        indices = [index for index, a in enumerate(assignment) if a == cluster]
        if indices:
            members = [texts[index] for index in indices]
            terms = distinctive_terms([terms_of[index] for index in indices], overall, len(texts))
            rows.append(
                {
                    "cluster": cluster,
                    "name": cluster_name(terms, cluster),
                    "size": len(members),
                    "terms": terms,
                    "examples": list(dict.fromkeys(members))[:3],
                }
            )
    return pl.DataFrame(rows, schema=CLUSTER_SCHEMA).sort("size", descending=True)
