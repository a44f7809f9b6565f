"""The languages a very short chat message can be in, from the words it is made of.

lingua judges a text by its letter n-grams, which a message of one to a few words hardly has:
"ciao" came out Maori, "hello?" Sesotho, "дякую" (Ukrainian "thanks") unknown. What users type
to a chatbot in so few words is mostly a small vocabulary per language: greetings, thanks,
yes and no, "why?", "continue", laughter. `chat_words.json` lists it for each of lingua's 75
languages (written by a helper from its own knowledge, without seeing this code or any
evaluation set; `docs/translation.md`).

`candidates` reads a message as a sequence of listed entries (the longest first: "dank je"
is one entry, "je" alone none) and returns the languages whose lists hold every one of them:
"ok perfecto" leaves Spanish ("ok" is in many lists and narrows nothing), "hvala" Croatian,
Bosnian, Serbian and Slovenian. A message with a word that is in no entry leaves nothing to
narrow. What is then decided, and how sure, is `language.py`'s: a word can be listed for
one language and be a common word of another ("are" is Persian "yes" in Latin letters).
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path
from types import MappingProxyType

LEXICON = Path(__file__).with_name("chat_words.json")
# Only this short a message (after cleaning) is looked up: lingua judges longer ones well,
# and a longer message made only of listed words is rare.
MAX_CHARS = 40
MAX_WORDS = 4
# The longest entry, in words.
MAX_ENTRY_WORDS = 3
# An entry in this many lists or more narrows nothing ("ok", "lol", "taxi").
SHARED_BY = 6

# Laughter and emphasis are typed at any length: "kkkkkk", "jajajaja", "sooo".
_REPEATED_LETTER = re.compile(r"(\w)\1{2,}")
_REPEATED_PAIR = re.compile(r"(\w\w)\1{2,}")
# Typed for an apostrophe: the right and left single quotes, and the modifier letter
# Ukrainian and Belarusian use ("сурʼёзна").
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'"})
_COMBINING_DOT_ABOVE = "\u0307"


def normalized(text: str) -> str:
    """Words in NFC, case-folded, without punctuation, emoji, digits or apostrophes at their
    edges, each run of a repeated letter or pair of letters cut to three."""
    # NFC: a decomposed "cảm ơn" (macOS input, some keyboards) is the same words. casefold
    # lowers Turkish "İ" to "i" and a combining dot, which no entry has.
    folded = (
        unicodedata.normalize("NFC", text)
        .translate(_APOSTROPHES)
        .casefold()
        .replace(_COMBINING_DOT_ABOVE, "")
    )
    # By Unicode category, not `\w`: Python's `\w` leaves out the vowel signs of Devanagari
    # and the other Indic scripts (category M), and would cut "नमस्ते" into pieces.
    letters = "".join(
        character if character in "' " or unicodedata.category(character)[0] in "LM" else " "
        for character in folded
    )
    letters = _REPEATED_PAIR.sub(r"\1\1\1", _REPEATED_LETTER.sub(r"\1\1\1", letters))
    return " ".join(word.strip("'") for word in letters.split() if word.strip("'"))


@cache
def _entries() -> MappingProxyType[str, frozenset[str]]:
    """Each listed entry, normalized -> the languages that list it, and those whose function
    words hold it (`_function_word_languages`)."""
    listed = json.loads(LEXICON.read_text(encoding="utf-8"))
    entries: dict[str, set[str]] = {}
    for code, phrases in listed.items():
        for phrase in phrases:
            entry = normalized(phrase)
            if entry:
                entries.setdefault(entry, set()).add(code)
    for word, codes in _function_word_languages().items():
        if word in entries:
            entries[word] |= codes
    return MappingProxyType({entry: frozenset(codes) for entry, codes in entries.items()})


def _function_word_languages() -> dict[str, set[str]]:
    """Word -> the languages whose function words (the `stop-words` package's lists, 33
    languages, read offline) hold it. A chat word of one language is often a function word of
    another: "on" is Catalan "where" and English "on", "he" Azerbaijani "yes", "are" Persian
    "yes" typed in Latin letters. Listed for one language only, such a word decided it,
    whatever the text around was; with both, lingua and fastText choose between them."""
    from stop_words import LANGUAGE_MAPPING, get_stop_words

    languages: dict[str, set[str]] = {}
    for code in LANGUAGE_MAPPING:
        for word in get_stop_words(code):
            languages.setdefault(normalized(word), set()).add(code)
    return languages


def candidates(text: str) -> frozenset[str] | None:
    """The languages whose lists hold every entry `text` (a short message) is made of; None
    where a word is in no entry, nothing narrows, or the message is too long."""
    if len(text) > MAX_CHARS:
        return None
    words = normalized(text).split()
    if not words or len(words) > MAX_WORDS:
        return None
    entries = _entries()
    narrowed: frozenset[str] | None = None
    start = 0
    while start < len(words):
        # The longest entry starting here: "dank je" before "dank".
        for length in range(min(MAX_ENTRY_WORDS, len(words) - start), 0, -1):
            languages = entries.get(" ".join(words[start : start + length]))
            if languages is not None:
                break
        else:
            return None
        start += length
        if len(languages) < SHARED_BY:
            narrowed = languages if narrowed is None else narrowed & languages
    return narrowed or None
