"""The language of a very short chat message from the words it is made of.

lingua judges a text by its letter n-grams, which a message of one to a few words hardly has:
"ciao" came out Maori, "hello?" Sesotho, "дякую" (Ukrainian "thanks") unknown. What users type
to a chatbot in so few words is mostly a small vocabulary per language: greetings, thanks,
yes and no, "why?", "continue", laughter. `chat_words.json` lists it for each of lingua's 75
languages (written by a helper from its own knowledge, without seeing this code or any
evaluation set; `docs/categorization.md`).

A message decides a language only when every word of it is in that language's list and the
words together leave exactly one language: "ok perfecto" is Spanish ("ok" is in many lists
and narrows nothing). Where they leave two to `MAX_CANDIDATES` ("hvala": Croatian, Bosnian
and Serbian alike), lingua chooses among those alone; a message with a word in no list is
lingua's as any other.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

LEXICON = Path(__file__).with_name("chat_words.json")
# Only this short a message (after cleaning) is looked up: lingua judges longer ones well,
# and a longer message made only of listed words is rare.
MAX_CHARS = 40
MAX_WORDS = 4
# A word in this many lists or more narrows nothing ("ok", "lol", "taxi").
SHARED_BY = 6
# What a decision is reported with: a fixed value, not a probability (a listed word is as
# sure as a script).
CONFIDENCE = 0.9
# Where the words leave a few languages ("ciao": Italian and others; "hello"), lingua picks
# among those alone, reported with this fixed value: it called "ciao" Maori and "hello?"
# Sesotho over all 75.
MAX_CANDIDATES = 5
NARROWED_CONFIDENCE = 0.7

# Laughter and emphasis are typed at any length: "kkkkkk", "jajajaja", "sooo".
_REPEATED_LETTER = re.compile(r"(\w)\1{2,}")
_REPEATED_PAIR = re.compile(r"(\w\w)\1{2,}")


def normalized(text: str) -> str:
    """Lowercase words without punctuation, emoji or digits, each run of a repeated letter or
    pair of letters cut to three."""
    # By Unicode category, not `\w`: Python's `\w` leaves out the vowel signs of Devanagari
    # and the other Indic scripts (category M), and would cut "नमस्ते" into pieces.
    words = "".join(
        character if character in "' " or unicodedata.category(character)[0] in "LM" else " "
        for character in text.lower().replace("’", "'")
    )
    words = _REPEATED_PAIR.sub(r"\1\1\1", _REPEATED_LETTER.sub(r"\1\1\1", words))
    return " ".join(words.split())


@cache
def _lexicon() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """(whole entries -> languages, words of entries -> languages)."""
    listed = json.loads(LEXICON.read_text(encoding="utf-8"))
    entries: dict[str, set[str]] = {}
    words: dict[str, set[str]] = {}
    for code, phrases in listed.items():
        for phrase in phrases:
            phrase = normalized(phrase)
            if not phrase:
                continue
            entries.setdefault(phrase, set()).add(code)
            for word in phrase.split():
                words.setdefault(word, set()).add(code)
    return (
        {entry: frozenset(codes) for entry, codes in entries.items()},
        {word: frozenset(codes) for word, codes in words.items()},
    )


def candidates(text: str) -> frozenset[str] | None:
    """The languages whose lists hold every word of `text` (a short message); None where a
    word is in no list, nothing narrows, or the message is too long."""
    if len(text) > MAX_CHARS:
        return None
    message = normalized(text)
    words = message.split()
    if not words or len(words) > MAX_WORDS:
        return None
    entries, word_languages = _lexicon()
    whole = entries.get(message)
    if whole is not None or len(words) == 1:
        # A word alone must be an entry itself: "je" is listed only inside "dank je".
        return whole
    narrowed: frozenset[str] | None = None
    for word in words:
        languages = word_languages.get(word)
        if languages is None:
            return None
        if len(languages) >= SHARED_BY:
            continue
        narrowed = languages if narrowed is None else narrowed & languages
    return narrowed or None


def language_of(text: str) -> str | None:
    """The one language whose list holds every word of `text` (a short message), else None."""
    found = candidates(text)
    return next(iter(found)) if found is not None and len(found) == 1 else None
