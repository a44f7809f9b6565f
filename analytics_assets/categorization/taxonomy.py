"""The taxonomy: topics, intents and sentiment rules, as configuration (YAML)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TAXONOMY = Path(__file__).with_name("taxonomy.yaml")
DIMENSIONS = ("topic", "intent", "sentiment")
# Scripts written without spaces between words: a keyword there matches as a substring.
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


@dataclass(frozen=True)
class Label:
    name: str
    description: str = ""
    examples: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    def regex(self) -> str | None:
        """One case-insensitive alternation of the label's rules; None without rules."""
        bounded = [re.escape(k.lower()) for k in self.keywords if not _UNSPACED.search(k)]
        unspaced = [re.escape(k.lower()) for k in self.keywords if _UNSPACED.search(k)]
        parts = []
        if bounded:
            parts.append(r"\b(?:" + "|".join(bounded) + r")\b")
        if unspaced:
            parts.append("(?:" + "|".join(unspaced) + ")")
        parts += [f"(?:{pattern})" for pattern in self.patterns]
        return "(?i)" + "|".join(parts) if parts else None


@dataclass(frozen=True)
class Taxonomy:
    version: str
    labels: dict[str, dict[str, Label]]  # dimension -> label name -> label
    fallbacks: dict[str, str] = field(default_factory=dict)

    def names(self, dimension: str) -> list[str]:
        return list(self.labels[dimension])


def _labels(section: dict[str, Any] | None) -> dict[str, Label]:
    labels = {}
    for name, spec in (section or {}).items():
        spec = spec or {}
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
            **document.get("fallbacks", {}),
        },
    )
    for dimension in ("topic", "intent"):
        if not taxonomy.labels[dimension]:
            raise ValueError(f"The taxonomy names no {dimension}s.")
    for labels in taxonomy.labels.values():
        for label in labels.values():
            if label.regex():
                re.compile(label.regex())  # a bad pattern fails at load, not mid-run
    return taxonomy


@cache
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """The deployment's taxonomy (ANALYTICS_TAXONOMY) or the shipped default."""
    chosen = Path(path or os.environ.get("ANALYTICS_TAXONOMY") or DEFAULT_TAXONOMY)
    return parse_taxonomy(yaml.safe_load(chosen.read_text(encoding="utf-8")))
