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
    # Unicode's hyphens and dashes too (`How–to`, a word processor's en dash, was a second
    # label beside `how_to`).
    words = re.split(
        r"[\s_\-\u2010-\u2015\u2212]+", unicodedata.normalize("NFKC", str(name)).strip().lower()
    )
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
        other keywords (accented, Cyrillic, CJK) match as substrings. A boundary is asked
        only at an end that is a word character: `c++`, `c#`, `.net` and `subject:` have
        none after (or before) their punctuation, and with one there they never matched.
        """
        ascii_words = [_whole_word(k.lower()) for k in self.keywords if k.isascii()]
        others = [re.escape(k.lower()) for k in self.keywords if not k.isascii()]
        parts = []
        if ascii_words:
            parts.append("(?:" + "|".join(ascii_words) + ")")
        if others:
            parts.append("(?:" + "|".join(others) + ")")
        parts += [f"(?:{pattern})" for pattern in self.patterns]
        return "|".join(parts) if parts else None


_WORD = re.compile(r"\w", re.ASCII)


def _whole_word(keyword: str) -> str:
    before = r"(?-u:\b)" if _WORD.match(keyword[:1]) else ""
    after = r"(?-u:\b)" if _WORD.match(keyword[-1:]) else ""
    return f"{before}{re.escape(keyword)}{after}"


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


def _texts(written: Any, field_name: str, label: str) -> tuple[str, ...]:
    """A label's list of keywords, examples or patterns, as written: a list of texts. A
    single text was read character by character (`keywords: parcel` matched every `a`),
    and an empty item as the keyword "None"."""
    if written is None:
        return ()
    if not isinstance(written, list):
        raise ValueError(
            f"The taxonomy's {label!r} {field_name} must be a list ([a, b] or one `- item` a "
            f"line), not {type(written).__name__} {written!r}."
        )
    texts = []
    for item in written:
        if item is None or (isinstance(item, str) and not item.strip()):
            raise ValueError(f"The taxonomy's {label!r} {field_name} has an empty item.")
        if isinstance(item, list | dict):
            raise ValueError(f"The taxonomy's {label!r} {field_name} has a nested {item!r}.")
        texts.append(str(item))
    return tuple(texts)


def _labels(section: dict[str, Any] | None) -> dict[str, Label]:
    if section is not None and not isinstance(section, dict):
        raise ValueError(f"A taxonomy section must map label names to labels, not {section!r}.")
    labels = {}
    for written, spec in (section or {}).items():
        if not isinstance(written, str):
            # YAML reads `on:`, `yes:` and `no:` as booleans, `1:` as a number.
            raise ValueError(f"The taxonomy's label {written!r} is not a text: quote it.")
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ValueError(f"The taxonomy's {written!r} must map fields to values.")
        name = canonical_label(written)
        if not name:
            raise ValueError(f"The taxonomy's label {written!r} has no name once normalized.")
        if name in labels:
            raise ValueError(f"The taxonomy names {name!r} twice (as {written!r} too).")
        labels[name] = Label(
            name=name,
            description=str(spec.get("description") or ""),
            examples=_texts(spec.get("examples"), "examples", written),
            keywords=_texts(spec.get("keywords"), "keywords", written),
            patterns=_texts(spec.get("patterns"), "patterns", written),
        )
    return labels


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of a repeated key: a label written twice lost its first copy
    without a word."""


def _mapping_without_repeats(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ValueError(
                f"The taxonomy names {key!r} twice in one section "
                f"(line {key_node.start_mark.line + 1})."
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats
)


def read_taxonomy_document(text: str) -> dict[str, Any]:
    """A taxonomy file's YAML, refusing a key written twice in one mapping."""
    document = yaml.load(text, Loader=_UniqueKeyLoader)
    if not isinstance(document, dict):
        raise ValueError("A taxonomy file must be a YAML mapping (topics:, intents:, ...).")
    return document


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
    return parse_taxonomy(read_taxonomy_document(chosen.read_text(encoding="utf-8")))
