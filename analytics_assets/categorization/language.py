"""Language detection: one lingua detector per process, shared by everything that needs it."""

from __future__ import annotations

import threading

import polars as pl

from analytics_assets.settings import get_settings

# The sample's eight languages and a few more that chatbots commonly see. Fewer candidates
# make lingua faster and surer; set ANALYTICS_LANGUAGES (ISO 639-1, comma separated).
DEFAULT_LANGUAGES = ("en", "es", "de", "fr", "pt", "it", "nl", "zh", "ja", "ko", "ru", "ar")
UNKNOWN = "unknown"
_detector = None
_lock = threading.Lock()


def configured_languages() -> tuple[str, ...]:
    """ANALYTICS_LANGUAGES, else the default set (one detector per process, so the
    process's settings decide)."""
    return tuple(get_settings().languages or DEFAULT_LANGUAGES)


def detector():
    """Built once: building one for many languages takes seconds."""
    global _detector
    with _lock:
        if _detector is None:
            from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

            languages = [
                Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
                for code in configured_languages()
            ]
            _detector = LanguageDetectorBuilder.from_languages(*languages).build()
        return _detector


# lingua's accuracy levels off after a few sentences while its cost grows with the length:
# a long message is judged on its first 300 characters.
DETECTION_PREFIX_CHARS = 300


def detect_languages(texts: pl.Series) -> pl.DataFrame:
    """ISO 639-1 code and confidence per text; `unknown` (confidence 0) for text without
    enough letters to tell (empty, emoji, numbers). Each distinct prefix is judged once."""
    prefixes = texts.fill_null("").str.slice(0, DETECTION_PREFIX_CHARS)
    distinct = prefixes.unique(maintain_order=True)
    letters = distinct.str.count_matches(r"\p{L}").to_list()
    values = distinct.to_list()
    candidates = [index for index, count in enumerate(letters) if count >= 2]
    codes = [UNKNOWN] * len(values)
    confidences = [0.0] * len(values)
    if candidates:
        results = detector().compute_language_confidence_values_in_parallel(
            [values[index] for index in candidates]
        )
        for index, ranked in zip(candidates, results, strict=True):
            if ranked:
                codes[index] = ranked[0].language.iso_code_639_1.name.lower()
                confidences[index] = round(ranked[0].value, 4)
    judged = pl.DataFrame(
        {"_prefix": values, "language": codes, "language_confidence": confidences},
        schema={"_prefix": pl.String, "language": pl.String, "language_confidence": pl.Float64},
    )
    return (
        pl.DataFrame({"_prefix": prefixes})
        .join(judged, on="_prefix", how="left", maintain_order="left")
        .drop("_prefix")
    )
