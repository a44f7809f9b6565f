"""Character n-gram heads: the rules tier's classifiers for what its keywords miss.

fastText's supervised classifier on character n-grams, trained by
`scripts/train_ngram_heads.py` on the same corpora as the encoder heads and shipped
quantized: `heads/ngram/` (the helper-written support corpus, 12 languages: topic, intent
and sentiment), `heads/ngram/assistant/` (real ShareGPT openings labelled by helpers: the
assistant taxonomy's topic and intent) and `heads/ngram/combined/` (both corpora: the
assistant taxonomy's sentiment). They need no encoder and no torch: a head labels about
60,000 short texts a second on one core (`benchmarks/bench_rules.py`), so they run wherever
the rules tier runs, in every step that labels text.

Like the encoder heads, a topic or intent head is used only when its labels are the
taxonomy's (`model_tier.head_fits`), and a sure fallback stays an abstention. A sentiment
head fits every taxonomy, as sentiment is always negative, neutral or positive, and a
taxonomy gets the one of its own domain where there is one (support complaints and
open-domain requests read differently; a custom taxonomy gets support's).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from analytics_assets.categorization.language import DENSE_SCRIPT_WEIGHT
from analytics_assets.categorization.model_tier import (
    DEFAULT_DOMAIN,
    SENTIMENT_LABELS,
    head_fits,
    one_per_dimension,
)
from analytics_assets.categorization.taxonomy import Taxonomy

NGRAM_HEADS = Path(__file__).resolve().parent / "heads" / "ngram"
METHOD = "ngram"
# A head says nothing of a text with fewer letters than this ("ok", "???", "12345", an
# emoji): fastText still answers, with a confident guess (`ok` was `integration` at 1.0). A
# Han, kana or Hangul character counts three, as in language detection ("退款" is enough).
MIN_LETTERS = 5
# A head's own floor over the deployment's threshold, by corpus and dimension. The support
# topic head was trained on support chats only and is confidently wrong on chats about
# anything else: on the dev half of the ShareGPT openings (benchmarks/eval_open_domain.py
# --split dev --ngram-topic-floors), it gave a support topic to 21.6 % at 0.5, 12.8 % at
# 0.6, 7.8 % at 0.7, while on the support dev half it still labelled 61.5 % of the texts at
# 0.7, right on 94 % of them (at 0.5: 78 %, 91 %).
# 0.7 is the lowest floor of those tried (0.5 to 0.9) at which at most a tenth of off-topic
# chats get a support topic. Intent's labels (information, support, feedback…) fit
# open-domain chats too; sentiment heads are chosen by the taxonomy's domain instead.
FLOORS = {("support", "topic"): 0.7}
_WHITESPACE = re.compile(r"\s+")
_LETTER = re.compile(r"[^\W\d_]")
_DENSE = r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]"
# A dense character is the group, so `lastindex` tells it from a letter.
_LETTER_OR_DENSE = re.compile(f"({_DENSE})|[^\\W\\d_]")


@dataclass(frozen=True)
class NgramHead:
    dimension: str
    labels: frozenset[str]
    path: Path
    max_chars: int
    version: str
    # Probabilities are p ** (1 / temperature), renormalized (fitted on held-out folds).
    temperature: float = 1.0
    # The least probability at which the head's label is used (`FLOORS`).
    floor: float = 0.0
    # The labels that are a decision for the taxonomy: a head may have learnt the
    # taxonomy's fallback (`other`, `uncertain`) as a class, and a sure fallback is still an
    # abstention unless the taxonomy names it as a label too (support's `other`).
    decisive: frozenset[str] = frozenset()

    @property
    def model(self):
        return _load(self.path)

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        """The most probable label of each text and its calibrated probability; "" and 0 for
        a text with too few letters to judge."""
        labels, probabilities = [""] * len(texts), np.zeros(len(texts))
        indices, found, calibrated = self._calibrated(texts)
        for index, text_labels, text_probabilities in zip(indices, found, calibrated, strict=True):
            labels[index] = text_labels[0].removeprefix("__label__")
            probabilities[index] = text_probabilities[0]
        return labels, probabilities

    def distributions(
        self, texts: list[str], names: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each text's calibrated probabilities over `names`, in that order (the head's own
        labels: `model_tier._companions` pools only a head with the same labels), and
        whether the head answered it at all (a text with too few letters: no; its row is
        uniform)."""
        column = {f"__label__{name}": index for index, name in enumerate(names)}
        rows = np.full((len(texts), len(names)), 1.0 / max(len(names), 1))
        answered = np.zeros(len(texts), dtype=bool)
        indices, found, calibrated = self._calibrated(texts)
        for index, text_labels, text_probabilities in zip(indices, found, calibrated, strict=True):
            row = np.zeros(len(names))
            for label, share in zip(text_labels, text_probabilities, strict=True):
                if label in column:
                    row[column[label]] = share
            rows[index], answered[index] = row, True
        return rows, answered

    def _calibrated(self, texts: list[str]) -> tuple[list[int], list, list[np.ndarray]]:
        """For each text with enough letters to judge: its index, fastText's labels best
        first, and their probabilities with the temperature."""
        model = self.model
        indices, found, probabilities = [], [], []
        for index, text in enumerate(texts):
            line = normalized(text, self.max_chars)
            # A privacy placeholder is not the user's words: "<PHONE>" alone was a sure
            # `bug` and a sure `negative` (its letters "phone" counted as a text).
            if not _has_letters(_PLACEHOLDER.sub(" ", line), MIN_LETTERS):
                continue
            text_labels, text_probabilities = model.predict(line, k=-1)
            if not text_labels:
                continue
            indices.append(index)
            found.append(text_labels)
            probabilities.append(text_probabilities)
        if not indices:
            return [], [], []
        if len({len(row) for row in probabilities}) == 1:
            # k=-1 gives every label, so the rows are as long: scaled in one go.
            return indices, found, list(self._with_temperature(probabilities))
        # Should fastText ever leave a label out of a row, each row on its own.
        return indices, found, [self._with_temperature(row) for row in probabilities]

    def _with_temperature(self, probabilities) -> np.ndarray:
        """Probabilities (a row, or rows of one length) as p ** (1 / temperature), each row
        renormalized."""
        scaled = np.maximum(np.asarray(probabilities, dtype=float), 1e-9) ** (1 / self.temperature)
        return scaled / scaled.sum(axis=-1, keepdims=True)


def normalized(text: str | None, max_chars: int) -> str:
    """What the heads were trained on: NFKC, lower case, one space between words (fastText
    reads one line), the first `max_chars` characters."""
    text = text or ""
    # A long text (a pasted document, 20,000 characters) is normalized only as far as needed:
    # up to a space or line break past twice `max_chars`. NFKC composes nothing across
    # either, and either ends a final sigma's word as the end of the text does, so the part
    # before one normalizes to the start of the whole text's line; whitespace left at its
    # end is stripped, and once that gives `max_chars` characters, they are the whole
    # text's first `max_chars` (checked over every code point, and property-tested).
    if len(text) > _CUT_BEFORE * max_chars:
        cut = _SAFE_CUT.search(text, 2 * max_chars, _CUT_BEFORE * max_chars)
        if cut is not None:
            line = _normalized_whole(text[: cut.start()])
            if len(line) >= max_chars:
                return line[:max_chars]
    return _normalized_whole(text)[:max_chars]


def _normalized_whole(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).lower()
    return _WHITESPACE.sub(" ", folded).strip()


# `normalized` cuts a text longer than this many times `max_chars` at its first space or line
# break between twice and this many times `max_chars` (none there: it reads the whole text).
_CUT_BEFORE = 4
_SAFE_CUT = re.compile(r"[ \n]")
# The anonymizer's placeholders (`<EMAIL>`, `<PHONE:3fa9…>`), as `normalized` writes them.
_PLACEHOLDER = re.compile(r"<[a-z_]+(?::[0-9a-f]+)?>")


def letters(text: str) -> int:
    """Letters, a Han, kana or Hangul character counting `DENSE_SCRIPT_WEIGHT` (three)."""
    return sum(_letter_weights(text))


def _has_letters(text: str, at_least: int) -> bool:
    """`letters(text) >= at_least`, reading only as far as it takes (most texts: a word)."""
    count = 0
    for weight in _letter_weights(text):
        count += weight
        if count >= at_least:
            return True
    return at_least <= 0


def _letter_weights(text: str) -> Iterator[int]:
    """What each letter of `text` adds to `letters`, in order: one; a dense character two,
    and one more if it is a letter (most are; "・" and a few other marks in those blocks
    are not)."""
    for match in _LETTER_OR_DENSE.finditer(text):
        if match.lastindex is None:
            yield 1
        else:
            yield DENSE_SCRIPT_WEIGHT - 1 + (_LETTER.match(match.group()) is not None)


@cache
def _load(path: Path):
    # Two threads asking first may both load it; the cache keeps one, and nothing is lost.
    import fasttext

    return fasttext.load_model(str(path))


@cache
def _manifests() -> tuple[tuple[Path, dict], ...]:
    """Each shipped corpus's folder and manifest, the support one first."""
    paths = [NGRAM_HEADS / "manifest.json", *sorted(NGRAM_HEADS.glob("*/manifest.json"))]
    return tuple((path.parent, json.loads(path.read_text())) for path in paths if path.exists())


def ngram_heads(taxonomy: Taxonomy) -> dict[str, NgramHead]:
    """The shipped heads that fit `taxonomy`, by dimension (none when none fit). Sentiment
    fits every taxonomy; where several sentiment heads do, the one of the taxonomy's own
    domain (that of the corpus whose topic head fits it), else support's
    (`model_tier.one_per_dimension`)."""
    fitting: list[tuple[str, str, NgramHead]] = []  # (dimension, domain, head)
    for folder, manifest in _manifests():
        for dimension, entry in manifest.get("heads", {}).items():
            labels = frozenset(entry["labels"])
            if not head_fits(dimension, labels, taxonomy):
                continue
            names = SENTIMENT_LABELS if dimension == "sentiment" else taxonomy.names(dimension)
            head = NgramHead(
                dimension=dimension,
                labels=labels,
                path=folder / entry["file"],
                max_chars=manifest["max_chars"],
                version=f"ngram-{manifest['corpus_sha256']}",
                temperature=float(entry.get("temperature", 1.0)),
                floor=FLOORS.get((manifest["name"], dimension), 0.0),
                decisive=labels & frozenset(names),
            )
            fitting.append((dimension, manifest.get("domain", DEFAULT_DOMAIN), head))
    return one_per_dimension(fitting)
