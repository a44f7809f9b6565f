"""The taxonomy: topics, intents and sentiment rules, as configuration (YAML)."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import yaml

DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")
# The taxonomies shipped with the package, chosen by name (ANALYTICS_TAXONOMY=assistant):
# customer support (the default) and general-purpose assistants (open-domain chats).
SHIPPED_TAXONOMIES = {
    "support": DEFAULT_TAXONOMY,
    "assistant": Path(__file__).with_name("taxonomy_assistant.yaml"),
}
DIMENSIONS = ("topic", "intent", "sentiment")


def canonical_label(name: str | None) -> str | None:
    """One spelling per label, however it was written: `How to`, `how-to` and `how_to` are
    all `how_to` (lower case, runs of spaces, hyphens and underscores as one underscore).
    Used for the taxonomy's names, labelled data (`evaluate`) and corrections (feedback)."""
    if name is None:
        return None
    words = re.split(r"[\s_\-]+", unicodedata.normalize("NFKC", str(name)).strip().lower())
    return "_".join(word for word in words if word)


@dataclass(frozen=True)
class Label:
    name: str
    description: str = ""
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def regex(self) -> str | None:
        """One alternation of the label's rules, for lower-cased text; None without rules.

        ASCII keywords match as whole words with ASCII word boundaries, which keep the regex
        on its fast automaton (Unicode boundaries and case folding make it ~10x slower);
        other keywords (accented, Cyrillic, CJK) match as substrings.
        """
        ascii_words = [re.escape(k.lower()) for k in self.keywords if k.isascii()]
        others = [re.escape(k.lower()) for k in self.keywords if not k.isascii()]
        parts = []
        if ascii_words:
            parts.append(r"(?-u:\b)(?:" + "|".join(ascii_words) + r")(?-u:\b)")
        if others:
            parts.append("(?:" + "|".join(others) + ")")
        parts += [f"(?:{pattern})" for pattern in self.patterns]
        return "|".join(parts) if parts else None


@dataclass(frozen=True)
class Taxonomy:
    version: str
    labels: dict[str, dict[str, Label]]  # dimension -> label name -> label
    fallbacks: dict[str, str] = field(default_factory=dict)
    # The languages the keyword rules are written in; None: every language. A conversation in
    # another language is categorized through its translation when there is one.
    rule_languages: tuple[str, ...] | None = None

    def names(self, dimension: str) -> list[str]:
        return list(self.labels[dimension])


def _labels(section: dict[str, Any] | None) -> dict[str, Label]:
    labels = {}
    for written, spec in (section or {}).items():
        spec = spec or {}
        name = canonical_label(written)
        if name in labels:
            raise ValueError(f"The taxonomy names {name!r} twice (as {written!r} too).")
        labels[name] = Label(
            name=name,
            description=spec.get("description", ""),
            examples=tuple(spec.get("examples", ())),
            keywords=tuple(str(keyword) for keyword in spec.get("keywords", ())),
            patterns=tuple(spec.get("patterns", ())),
        )
    return labels


def parse_taxonomy(document: dict[str, Any]) -> Taxonomy:
    taxonomy = Taxonomy(
        version=str(document.get("version", "unversioned")),
        labels={
            "topic": _labels(document.get("topics")),
            "intent": _labels(document.get("intents")),
            "sentiment": _labels(document.get("sentiments")),
        },
        fallbacks={
            "topic": "other",
            "intent": "uncertain",
            "sentiment": "uncertain",
            **{
                dimension: canonical_label(label)
                for dimension, label in document.get("fallbacks", {}).items()
            },
        },
        rule_languages=tuple(document["rule_languages"])
        if document.get("rule_languages")
        else None,
    )
    for dimension in ("topic", "intent"):
        if not taxonomy.labels[dimension]:
            raise ValueError(f"The taxonomy names no {dimension}s.")
    for labels in taxonomy.labels.values():
        for label in labels.values():
            if label.regex():
                # The rules run on polars' (Rust) regex engine: a bad pattern fails at load.
                pl.select(pl.lit("").str.count_matches(label.regex()))
    return taxonomy


@cache
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """The taxonomy at `path` (the deployment's ANALYTICS_TAXONOMY: a shipped taxonomy's
    name or a YAML file) or the shipped support taxonomy."""
    chosen = SHIPPED_TAXONOMIES.get(path or "support") or Path(path)
    return parse_taxonomy(yaml.safe_load(chosen.read_text(encoding="utf-8")))
