"""Structured PII in message text: detection with a type and a span, and anonymization
(`redact` to a typed placeholder, or `pseudonymize` with a keyed HMAC so the same value maps
to the same token and joins still work).

Vectorized: each type is one regex run by polars over the whole column; only the rare rows
that match go through Python, and only for what a regex cannot say (the Luhn check of a card
number, the mod-97 check of an IBAN, the entropy of a token, whether an address is public,
whether a run of digits is a phone number).

Covered: emails, phone numbers (libphonenumber: international `+` numbers of any country, and
national formats of the regions of the configured languages), payment cards (Luhn), IBANs
(checksum), public IPv4 and IPv6 addresses, URLs carrying credentials or tokens, API keys
and secrets (known prefixes, and long random-looking tokens outside URLs, paths and
identifiers), and US social security numbers. Not covered: names, street addresses and
free-text identifiers (no offline model ships for them here).

A placeholder `anonymize` wrote (`<EMAIL>`, `<EMAIL:3fa9c1d2e4b5>`) is never read as PII, so
anonymizing twice changes nothing and a check on anonymized text finds only what is left.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import heapq
import hmac
import ipaddress
import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import phonenumbers
import polars as pl
from phonenumbers import Leniency, PhoneMetadata, PhoneNumberMatcher

EMAIL = "EMAIL"
PHONE = "PHONE"
CARD = "CARD"
IBAN = "IBAN"
IP = "IP"
URL_SECRET = "URL_SECRET"
API_KEY = "API_KEY"
GOV_ID = "GOV_ID"

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_H = r"[0-9A-Fa-f]{1,4}"
# Digits and the separators libphonenumber allows between them (its VALID_PUNCTUATION, with
# any white space): a run of 8 digits or more (MIN_PHONE_DIGITS) is what a phone number needs
# to be looked at.
_PHONE_DIGIT = r"[0-9０-９٠-٩۰-۹]"
_PHONE_SEPARATOR = r"[\s\-‐-―−ー－-／/.()（）［］\[\]~⁓∼～\u00ad\u200b\u2060]"
# The letters (and digits) of an e-mail address, as explicit ranges: polars' engine and
# Python's read `\w` differently (Python's holds `²` and `①`), and the sift must let through
# every row the exact check would match.
# Combining marks (U+0300-036F) too: an address typed in decomposed form (`jose\u0301@`,
# `@mu\u0308ller.de`, as macOS writes file names) was left whole or in part.
_ADDRESS_LETTERS_ONLY = (
    r"A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0300-\u036f\u0370-\u03ff\u0400-\u04ff"
    r"\u0900-\u0dff"
)
_ADDRESS_LETTERS = "0-9" + _ADDRESS_LETTERS_ONLY
KEY_PREFIXES = (
    r"sk-(?:proj-)?[A-Za-z0-9_-]{20,}|sk_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|rk_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
)
# A URL with a user and password (`postgres://admin:pw@db`, `redis://:pw@cache`).
_URL_USERINFO = r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@\"'<>()]*:[^\s/@\"'<>()]+@[^\s\"'<>()]+"
_SECRET_NAMES = (
    r"access_token|refresh_token|id_token|auth_token|api_token|client_secret|token|"
    r"api_key|apikey|key|secret|password|passwd|sig|signature|auth"
)
# An http(s) URL with a secret in its query or fragment (`?token=…`, `#access_token=…`).
_URL_QUERY_SECRET = (
    r"[hH][tT][tT][pP][sS]?://[^\s?#\"'<>()]+[?#][^\s#\"'<>()]*?"
    rf"\b(?i:{_SECRET_NAMES})=[^&\s#\"'<>()]+[^\s\"'<>()]*"
)
PATTERNS: dict[str, str] = {
    # Order matters: the first type to claim a span keeps it (a key inside a URL is the URL's).
    # Where a scheme may start is Python's only (`_RUN_STARTS`), as for addresses; the
    # second form is found in Python from its parameter back (`_query_secret_spans`).
    URL_SECRET: f"{_URL_USERINFO}|{_URL_QUERY_SECRET}",
    API_KEY: (
        rf"\b(?:{KEY_PREFIXES})"
        # A long token of mixed letters and digits: judged by its context and entropy below.
        r"|\b[A-Za-z0-9+/_-]{32,}={0,2}"
    ),
    # Latin, Greek, Cyrillic and Indic letters, marks included (josé@, @müller.de,
    # किशोर@): addresses allow them now. Not Chinese, Japanese or Korean, written without
    # spaces: `请发邮件到zhang@example.com谢谢` was one address of the whole sentence.
    # Its edges are Python's only (`_RUN_STARTS`, `_RUN_ENDS`): a word boundary between a
    # Chinese character and a Latin letter is none, and `到zhang@example.com谢谢` was missed.
    EMAIL: rf"[{_ADDRESS_LETTERS}._%+-]+@[{_ADDRESS_LETTERS}-]+(?:\.[{_ADDRESS_LETTERS}-]+)*"
    rf"\.[{_ADDRESS_LETTERS_ONLY}]{{2,}}",
    IBAN: r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    CARD: (
        r"\b[0-9]{4}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}(?:[ -][0-9]{1,3})?\b"
        r"|\b3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}\b"  # American Express: 4-6-5
    ),
    GOV_ID: r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
    IP: (
        # An IPv4 address mapped into IPv6 (Node's logs write `::ffff:81.2.69.160`): whole.
        rf"::[fF]{{4}}:{_OCTET}(?:\.{_OCTET}){{3}}\b"
        rf"|\b{_OCTET}(?:\.{_OCTET}){{3}}\b"
        rf"|(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:(?:{_H}(?::{_H}){{0,5}})?|::(?:{_H}:){{0,6}}{_H}"
    ),
    # Only the sift: rows with a run of 8+ digits go to libphonenumber (`phone_spans`).
    PHONE: rf"{_PHONE_DIGIT}(?:{_PHONE_SEPARATOR}{{0,4}}{_PHONE_DIGIT}){{7,}}",
}
# Where a match may start, in Python only (polars' engine is linear and has no lookbehind):
# an address or a URL scheme at the start of a run of the characters it is made of. Tried
# from every position of a long run (`a-a-a-…`, `word.word.…`), each attempt scanned the
# rest of it: 100 KB of such text took 7 s, a megabyte would take minutes.
# A run may begin with punctuation the match itself cannot begin with (`-john@…`,
# `2.https://…`): it is read, outside the match (group `v`), and the match starts after it.
# The leading punctuation is taken whole (possessive `*+`): given back a character at a
# time, each shorter prefix scanned the rest of the run again, and a line of 100,000 dots
# before an address took 8 s (a megabyte, minutes).
_URL_START = r"(?<![A-Za-z0-9+.-])[0-9+.-]*+"
_RUN_STARTS = {
    EMAIL: rf"(?<![{_ADDRESS_LETTERS}._%+-])[._%+-]*+",
    URL_SECRET: _URL_START,
}
# Where an address ends: at a character it cannot hold (a Chinese one included).
_RUN_ENDS = {EMAIL: rf"(?![{_ADDRESS_LETTERS}])"}
# In Python the URL with a secret parameter is not a pattern searched from each place a URL
# may start: from each start of a run of URLs without spaces (`http://x?a=http://x?a=…`, a
# comma-separated list), the search for a `key=` went to the end of the run, 47 s for 100 KB.
# `_query_secret_spans` finds the parameters and looks back for their URL instead.
_PYTHON_PATTERNS = {**PATTERNS, URL_SECRET: _URL_USERINFO}
# Their word boundaries are ASCII ones in Python: a Han, kana, Hangul, Arabic or Cyrillic
# letter is a word character, and Chinese, Japanese and Korean write a number against the
# word before it ("卡号4111…", "카드번호4111-…입니다", "口座DE89…です"): no boundary was found
# there, and the card, IBAN, SSN, address or key was left raw (the check passed it). A
# Latin letter or a digit still joins ("card4111…" is no card). polars' sift has no
# boundaries at all (`_SIFT_PATTERNS`).
_ASCII_BOUNDARIES = (API_KEY, IBAN, CARD, GOV_ID, IP)
_COMPILED = {
    kind: re.compile(
        f"{_RUN_STARTS[kind]}(?P<v>{pattern}){_RUN_ENDS.get(kind, '')}"
        if kind in _RUN_STARTS
        else pattern,
        re.ASCII if kind in _ASCII_BOUNDARIES else 0,
    )
    for kind, pattern in _PYTHON_PATTERNS.items()
}
_KEY_PREFIX = re.compile(KEY_PREFIXES)
# Context that turns a dotted quad into a version number, not an address.
_VERSION_BEFORE = re.compile(r"\b(?:v|version|ver\.?|release|build)\s*$", re.IGNORECASE)

# -- phone numbers ---------------------------------------------------------------------------

# The main telephone regions of each language lingua knows (ISO 639-1 -> ISO 3166-1): where a
# number written in national format (no `+`) is read. International numbers are found
# whatever the region.
LANGUAGE_REGIONS: dict[str, tuple[str, ...]] = {
    "af": ("ZA",), "ar": ("SA", "EG"), "az": ("AZ",), "be": ("BY",), "bg": ("BG",),
    "bn": ("BD",), "bs": ("BA",), "ca": ("ES",), "cs": ("CZ",), "cy": ("GB",), "da": ("DK",),
    "de": ("DE", "AT", "CH"), "el": ("GR",), "en": ("US", "GB"), "eo": (), "es": ("ES", "MX"),
    "et": ("EE",), "eu": ("ES",), "fa": ("IR",), "fi": ("FI",), "fr": ("FR", "BE", "CH"),
    "ga": ("IE",), "gu": ("IN",), "he": ("IL",), "hi": ("IN",), "hr": ("HR",), "hu": ("HU",),
    "hy": ("AM",), "id": ("ID",), "is": ("IS",), "it": ("IT",), "ja": ("JP",), "ka": ("GE",),
    "kk": ("KZ",), "ko": ("KR",), "la": (), "lg": ("UG",), "lt": ("LT",), "lv": ("LV",),
    "mi": ("NZ",), "mk": ("MK",), "mn": ("MN",), "mr": ("IN",), "ms": ("MY",), "nb": ("NO",),
    "nl": ("NL", "BE"), "nn": ("NO",), "pa": ("IN", "PK"), "pl": ("PL",), "pt": ("BR", "PT"),
    "ro": ("RO", "MD"), "ru": ("RU",), "sk": ("SK",), "sl": ("SI",), "sn": ("ZW",),
    "so": ("SO",), "sq": ("AL",), "sr": ("RS",), "st": ("LS",), "sv": ("SE",),
    "sw": ("KE", "TZ"), "ta": ("IN", "LK"), "te": ("IN",), "th": ("TH",), "tl": ("PH",),
    "tn": ("BW",), "tr": ("TR",), "ts": ("ZA",), "uk": ("UA",), "ur": ("PK",), "vi": ("VN",),
    "xh": ("ZA",), "yo": ("NG",), "zh": ("CN", "TW"), "zu": ("ZA",),
}  # fmt: skip
# Where ANALYTICS_LANGUAGES is unset (lingua then tells every language apart): the regions
# of the most used languages. Not all of lingua's: the more regions, the more runs of
# digits are a valid number somewhere (with DK, NO, CZ, LV… in, table rows such as
# "50 122 200" and "2020 2015" were; see docs/privacy.md).
DEFAULT_PHONE_LANGUAGES = ("en", "de", "fr", "es", "pt", "it", "nl", "ja", "zh", "ru", "ko", "ar")
# How far before and after a finding its context is read (bounded: a check must not cost a
# scan of everything before it in a long text).
_NEAR, _FAR = 64, 2048
# Fewer digits than this (country code included) is not taken for a phone number.
MIN_PHONE_DIGITS = 8
_RUN = re.compile(PATTERNS[PHONE])
# What a claimed span (a card, an IP…) is masked with before libphonenumber reads the text:
# not a digit, a letter nor phone punctuation, so neither part of a number nor a reason to
# reject one beside it.
_MASK = "\u2588"
# What a run of digits is when it is not a phone number, told by its shape: a date anywhere
# in it (2023-02-24, 07-27-2009, 24.02.2023, 09/2013, 20230213, 2018/340246), years
# (2020 2015, a citation's (2014)), an en or em dash (a range), a time range (0815-0830), an
# IPv4 address.
_YEAR = r"(?:1[5-9]|20)\d\d"
_MONTH_DAY = r"(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
_NOT_PHONE_SHAPE = re.compile(
    r"(?<!\d)\d{4}[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])(?!\d)"
    rf"|(?<!\d)\d\d?[-./]\d\d?[-./]{_YEAR}|(?<!\d)\d\d?/{_YEAR}(?!\d)|^{_YEAR}\s*/"
    rf"|^{_YEAR}{_MONTH_DAY}$|^(?:0[1-9]|[12]\d|3[01])(?:0[1-9]|1[0-2]){_YEAR}$"
    rf"|^(?:{_YEAR}\W+)+{_YEAR}$|\({_YEAR}\)"
    r"|[–—]"
    r"|^[0-2]?\d[.:h]?[0-5]\d\s*-\s*[0-2]?\d[.:h]?[0-5]\d$"
    r"|^\d{1,3}(?:\.\d{1,3}){3}$"
)
# ... or by its context: glued to a word or an identifier (ALP.07.08.0101, MolPort-046-416),
# a path, or the digits of a longer number (a decimal, a time); in a sum (800 - 1000 - 500);
# after a word naming another kind of number (ISSN 0967-0661, Meeting ID: 3903 03 5809).
_LETTER = r"[0-9A-Za-z_\u00c0-\u024f]"
# `\Z`, not `$`: `$` also matches before a final line break, so a number at the start of a
# line read as glued to the end of the line before ("…5678\n+44 20 7946 0958").
_NOT_PHONE_BEFORE = re.compile(
    rf"(?:{_LETTER}|[0-9][.,:]|{_LETTER}[-_.]|[-−/\\]|\d\s*[-+*×=]\s*)\Z"
    r"|\b(?:ISSN|ISBN(?:-1[03])?|DOI|EIN|SKU|IDs?|order|invoice|ticket|folio|serial|"
    r"part (?:number|no\.?)|doc|version|ver\.?|release|build|v)\W{0,8}\Z",
    re.IGNORECASE,
)
# A sum is on one line, with its `+` spaced as its operands are ("12345678 + 4420794",
# "12345678+4420794"): a number followed by a line break and `+44…`, or by a space and
# `+44…`, is the first of a list of numbers.
_SPACE_ON_A_LINE = r"[^\S\n\r\v\f\u2028\u2029]"
_NOT_PHONE_AFTER = re.compile(
    rf"{_LETTER}|[.,:/\\-]{_LETTER}|{_SPACE_ON_A_LINE}*[-*×=]\s*\d|\+\s*\d"
    rf"|{_SPACE_ON_A_LINE}+\+\s+\d"
)


def language_regions(languages: Iterable[str] | None) -> tuple[str, ...]:
    """The telephone regions of `languages` (ISO 639-1), in order, without repeats; None:
    those of DEFAULT_PHONE_LANGUAGES."""
    codes = DEFAULT_PHONE_LANGUAGES if languages is None else [c.lower() for c in languages]
    return tuple(dict.fromkeys(r for code in codes for r in LANGUAGE_REGIONS.get(code, ())))


def configured_regions() -> tuple[str, ...]:
    """The regions of the deployment's languages (ANALYTICS_LANGUAGES; unset: those of
    DEFAULT_PHONE_LANGUAGES)."""
    from analytics_assets.settings import get_settings

    languages = get_settings().languages
    return _cached_regions(None if languages is None else tuple(languages))


@cache
def _cached_regions(languages: tuple[str, ...] | None) -> tuple[str, ...]:
    return language_regions(languages)


@dataclass(frozen=True)
class _Region:
    """What a number written in a region's national format can look like: a cheap test
    before libphonenumber parses it (a parse costs ~50 µs), true for every number it could
    accept: a national number of a possible length that one of the number types' patterns
    (fixed line, mobile, toll free…) of a region with this calling code matches."""

    region: str
    calling_code: str
    trunk_prefix: str | None
    national_prefix: re.Pattern | None
    lenient_prefix: bool  # the prefix is rewritten, not just removed: any length may follow
    international_prefix: re.Pattern | None
    lengths: frozenset[int]
    patterns: tuple[re.Pattern, ...]

    def has_trunk_prefix(self, digits: str) -> bool:
        return bool(self.trunk_prefix) and digits.startswith(self.trunk_prefix)

    def could_be(self, digits: str) -> bool:
        if self.international_prefix and self.international_prefix.match(digits):
            return True
        options = [digits]
        if digits.startswith(self.calling_code):
            options.append(digits[len(self.calling_code) :])
        prefix = self.national_prefix.match(digits) if self.national_prefix else None
        if prefix and prefix.end():
            if self.lenient_prefix:
                return True
            options.append(digits[prefix.end() :])
        return any(
            len(o) in self.lengths and any(p.fullmatch(o) for p in self.patterns) for o in options
        )


@cache
def _regions(regions: tuple[str, ...]) -> tuple[_Region, ...]:
    """One entry per calling code (libphonenumber validates a national number against every
    region sharing its code: US for CA too)."""
    plans, codes = [], set()
    for region in regions:
        metadata = PhoneMetadata.metadata_for_region(region.upper())
        if metadata is None or metadata.country_code in codes:
            continue
        codes.add(metadata.country_code)
        prefix = metadata.national_prefix_for_parsing or metadata.national_prefix
        plans.append(
            _Region(
                region=region.upper(),
                calling_code=str(metadata.country_code),
                trunk_prefix=metadata.national_prefix,
                national_prefix=re.compile(prefix) if prefix else None,
                lenient_prefix=bool(metadata.national_prefix_transform_rule),
                international_prefix=re.compile(metadata.international_prefix)
                if metadata.international_prefix
                else None,
                **_number_types(metadata.country_code),
            )
        )
    return tuple(plans)


_NUMBER_TYPES = ("fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
                 "personal_number", "voip", "pager", "uan", "voicemail")  # fmt: skip


def _number_types(calling_code: int) -> dict:
    """Possible lengths and number-type patterns of every region sharing `calling_code`."""
    lengths, patterns = set(), set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(calling_code, ()):
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None:
            continue
        lengths |= set(metadata.general_desc.possible_length)
        for name in _NUMBER_TYPES:
            desc = getattr(metadata, name, None)
            if desc is not None and desc.national_number_pattern:
                patterns.add(desc.national_number_pattern)
    return {"lengths": frozenset(lengths), "patterns": tuple(map(re.compile, sorted(patterns)))}


_CLOSING = {"(": ")）", "（": ")）"}
_OPENING = tuple(_CLOSING)


class _RegionsMatcher(PhoneNumberMatcher):
    """libphonenumber's matcher (its candidates, date and time-stamp skipping, inner matches,
    and VALID leniency: a valid number, with its national prefix where one is written), each
    candidate read in every region that could hold it instead of in one region. It overrides
    the matcher's `_parse_and_verify`, an internal of the pinned phonenumbers version: an
    upgrade is checked by test_pii.py's phone formats."""

    def __init__(self, text: str, regions: tuple[_Region, ...]):
        super().__init__(text, regions[0].region if regions else "US", leniency=Leniency.VALID)
        self._plans = regions

    def _parse_and_verify(self, candidate, offset):
        # "(030 12345678)": the matcher takes the opening bracket and not the closing one.
        while candidate[:1] in _OPENING and candidate.count(candidate[0]) > sum(
            candidate.count(closing) for closing in _CLOSING[candidate[0]]
        ):
            candidate, offset = candidate[1:], offset + 1
        number = re.split(r"[A-Za-z#;,]", candidate, maxsplit=1)[0]  # before an extension
        digits = re.sub(r"[^0-9]", "", number)
        if len(digits) != sum(ch.isdigit() for ch in number):  # full-width, Arabic-Indic…
            digits = phonenumbers.normalize_digits_only(number)
        if len(digits) < MIN_PHONE_DIGITS or not _phone_shape_ok(candidate):
            return None
        if number.lstrip(" ([（［").startswith(("+", "＋")):
            regions = [self.preferred_region]  # the number says its country
        else:
            # Bare digits (no separator) only in full national form, trunk prefix first
            # (03012345678): without it they are ids, timestamps and dates far more often.
            bare = len(digits) == len(number.strip())
            regions = [
                plan.region
                for plan in self._plans
                if plan.could_be(digits) and not (bare and not plan.has_trunk_prefix(digits))
            ]
        for region in regions:
            self.preferred_region = region
            match = super()._parse_and_verify(candidate, offset)
            if match is not None:
                return match
        return None


def _phone_shape_ok(value: str) -> bool:
    if (
        value.count("(") != value.count(")")
        or value.count("[") != value.count("]")
        or _NOT_PHONE_SHAPE.search(value)
    ):
        return False
    if value.lstrip("(（［[").startswith(("+", "＋")):
        return True  # the rest is for numbers in national format
    groups = re.findall(r"\d+", value)
    dots = value.count(".")
    return not (
        # 0.60784314, 0.602 41.502, 109.0.5414.87: decimals, versions; dotted numbers
        # are 06.12.34.56.78
        (dots and (dots == 1 or re.search(r"\s", value) or min(map(len, groups)) < 2))
        or value.count(" - ") > 1
        # 2 2 17 27 22, 0-4294967295: counts, not digit groups of a number
        or groups[0] == "0"
        or sum(len(group) == 1 for group in groups) > 1
        # 9131-9137: pages, a range
        or (len(groups) == 2 and len(groups[0]) == len(groups[1]) and groups[0] < groups[1])
        # 028 029 030 031: a row of a grid of counters, not a number's digit groups
        or _counts_up(groups)
    )


def _counts_up(groups: list[str]) -> bool:
    """Three or more groups of one length, each one more than the one before."""
    return (
        len(groups) >= 3
        and len({len(group) for group in groups}) == 1
        and all(int(b) == int(a) + 1 for a, b in pairwise(groups))
    )


def _phone_context_ok(text: str, start: int, end: int) -> bool:
    before, after = text[max(0, start - _NEAR) : start], text[end : end + _NEAR]
    return not (_NOT_PHONE_BEFORE.search(before) or _NOT_PHONE_AFTER.match(after))


def phone_spans(
    text: str, regions: tuple[str, ...], taken: Iterable[tuple[int, int]] = ()
) -> Iterator[tuple[int, int]]:
    """Phone numbers in `text` (libphonenumber), away from the spans already `taken`."""
    # Joined once: rebuilt per span, a text of 30,000 addresses cost 30,000 copies of it.
    pieces, position = [], 0
    for start, end in sorted(taken):
        start = max(start, position)
        if end > start:
            pieces += [text[position:start], _MASK * (end - start)]
            position = end
    masked = "".join([*pieces, text[position:]])
    plans = _regions(regions)
    for window_low, window_high in _phone_windows(masked):
        for low, high in _phone_segments(masked, window_low, window_high):
            for match in _RegionsMatcher(masked[low:high], plans):
                start, end = low + match.start, low + match.end
                if _phone_context_ok(masked, start, end):
                    yield start, end


# Where one phone number ends for sure: a line break, or white space before a `+` (a number
# has its `+` only in front). libphonenumber reads numbers one after another as one stretch
# and finds only the last: of three `+380` numbers in a row, the third.
_PHONE_SEGMENT_END = re.compile(r"[\n\r\v\f\u2028\u2029]+|\s+(?=[+＋])")


def _phone_segments(text: str, low: int, high: int) -> Iterator[tuple[int, int]]:
    """[low, high) of `text` cut where one number ends for sure (`_PHONE_SEGMENT_END`)."""
    for boundary in _PHONE_SEGMENT_END.finditer(text, low, high):
        if boundary.start() > low:
            yield low, boundary.start()
        low = boundary.end()
    if high > low:
        yield low, high


def _phone_windows(text: str) -> list[tuple[int, int]]:
    """Where libphonenumber looks: around each run of MIN_PHONE_DIGITS digits, room for a
    `+`, brackets and an extension (a long text's other numbers are never parsed)."""
    windows: list[tuple[int, int]] = []
    for run in _RUN.finditer(text):
        low, high = max(0, run.start() - 8), min(len(text), run.end() + 24)
        if windows and low <= windows[-1][1]:
            windows[-1] = (windows[-1][0], high)
        else:
            windows.append((low, high))
    return windows


# -- checks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


def luhn_valid(digits: str) -> bool:
    numbers = [int(ch) for ch in digits if ch.isdigit()]
    if not 13 <= len(numbers) <= 19:
        return False
    total = 0
    for index, digit in enumerate(reversed(numbers)):
        if index % 2:
            digit *= 2
            digit -= 9 if digit > 9 else 0
        total += digit
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


# Public resolvers everyone types: addresses of a service, not of a person.
PUBLIC_SERVICE_ADDRESSES = frozenset(
    {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
     "208.67.222.222", "208.67.220.220", "2001:4860:4860::8888", "2001:4860:4860::8844",
     "2606:4700:4700::1111", "2606:4700:4700::1001"}
)  # fmt: skip


def ip_is_personal(value: str) -> bool:
    """Only a global (public) unicast address can point at a person: not 0.0.0.0, loopback,
    private, link-local, shared, documentation or multicast ranges, nor a public resolver."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return address.is_global and not address.is_multicast and value not in PUBLIC_SERVICE_ADDRESSES


def _ipv4_accepted(value: str, before: str, after: str) -> bool:
    prefix = re.match(r"/([0-9]{1,2})(?![0-9])", after)
    return not (
        _VERSION_BEFORE.search(before)
        # Part of a longer dotted number (1.2.3.4.5, an OID) or of a name (FBF-3.6.0.0).
        or re.match(r"\.[0-9]", after)
        or re.search(r"(?:[0-9]\.|[A-Za-z_]-?)\Z", before)
        # 1.1.2.1: a section number, or a placeholder (1.2.3.4); the public resolvers with
        # one-digit parts are listed in PUBLIC_SERVICE_ADDRESSES.
        or all(len(part) == 1 for part in value.split("."))
        # 200.128.1.0/24: a network block, not one host's address (a /32 is one).
        or (prefix and int(prefix.group(1)) < 32)
    )


def _ipv6_accepted(value: str, before: str, after: str) -> bool:
    return not (
        value.count(":") < 2
        or not re.search(r"[0-9]", value)
        or re.search(r"[\w:]\Z", before)  # std::move, Foo::bar: a scope, not an address
        or re.match(r"[\w:]", after)
    )


def _ip_accepted(value: str, start: int, end: int, text: str) -> bool:
    check = _ipv4_accepted if "." in value else _ipv6_accepted
    before, after = text[max(0, start - _NEAR) : start], text[end : end + _NEAR]
    return check(value, before, after) and ip_is_personal(value)


# A generic token is a secret only when it reads as random: long, mixing lower case, upper
# case and digits, with at least this many bits of entropy per character and words (the runs
# of one class: `Next`, `Generation`, `2019`) this short on average. The word length was set
# on the dev split of real ShareGPT messages (benchmarks/eval_pii_precision.py --split dev):
# the secrets there (private-key lines, OAuth tokens, keys) averaged at most 2.8 characters a
# word, the identifiers and paths at least 4.3; random base62 tokens of 32-64 characters
# stay under 3.5 in more than 99.9 % of draws.
MIN_TOKEN_LENGTH = 32
MIN_TOKEN_ENTROPY = 4.0
MAX_TOKEN_WORD_LENGTH = 3.5
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Where the text before a token starts (white space, a quote, a bracket): what follows, up to
# the token, is the URL or path it is part of.
_CHUNK_START = re.compile(r"[\s\"'`<>()\[\]{},;]")


def _in_url_or_path(text: str, start: int) -> bool:
    """A token inside a URL or a file path, not in its query string nor after a `=`. A JSON
    escape (`\\n`) ends a path; a markdown one (`\\_`) is no separator."""
    before = text[max(0, start - _FAR) : start]
    edge = _CHUNK_START.search(before[::-1])
    before = (before[len(before) - edge.start() :] if edge else before) + text[start : start + 1]
    before = re.split(r"\\[nrt]", before)[-1]
    separators = [match.start() for match in re.finditer(r"/|\\(?=[A-Za-z0-9])", before)]
    query = max(before.rfind("?"), before.rfind("="), before.rfind("&"))
    return bool(separators) and separators[-1] > query


def _reads_as_random(token: str) -> bool:
    """Short words: `nMIIEvwIBADANBgkq…` (a key) is, `BlockJUnit4ClassRunner`, `src/main/App`
    and `AddFiltersSection-1-e6fa8a72f` (a hash suffix set aside) are not."""
    parts = [p for p in re.split(r"[-_./+]", token) if not re.fullmatch(r"[0-9a-fA-F]*", p)]
    words = [word for part in parts for word in _WORD.findall(part)]
    return bool(words) and sum(map(len, words)) / len(words) <= MAX_TOKEN_WORD_LENGTH


def _encodes_text(token: str) -> bool:
    """Base64 of readable words (a message someone encoded), not of a key's random bytes."""
    body = token[: len(token) // 4 * 4]
    try:
        if "-" in body or "_" in body:
            decoded = base64.urlsafe_b64decode(body).decode()
        else:
            decoded = base64.b64decode(body).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return " " in decoded and all(ch.isprintable() or ch.isspace() for ch in decoded)


def generic_token_is_secret(token: str, text: str = "", start: int = 0) -> bool:
    stripped = token.rstrip("=")
    if re.fullmatch(r"(?:0x)?[0-9a-fA-F]+", stripped):
        return False  # commit and content hashes, wallet addresses: identifiers, not secrets
    if len(stripped) < MIN_TOKEN_LENGTH or _in_url_or_path(text, start):
        return False
    classes = sum(bool(re.search(p, stripped)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return (
        classes == 3
        and shannon_entropy(stripped) >= MIN_TOKEN_ENTROPY
        and _reads_as_random(stripped)
        and not _encodes_text(stripped)
    )


def _accept(kind: str, match: re.Match, text: str) -> bool:
    value = match.group(0)
    if kind == CARD:
        # Not the digits of a decimal fraction (`Recall: 0.3749068106865794`); a grouped
        # number is none (`3.4111 1111 1111 1111`, a list item). Not after a comma either:
        # that is a CSV row's next field (`1,4111111111111111`) as often.
        before = text[max(0, match.start() - 2) : match.start()]
        fraction = before[-1:] == "." and before[:1].isdigit() and value.isdigit()
        return luhn_valid(value) and not fraction
    if kind == IBAN:
        return iban_valid(value)
    if kind == IP:
        return _ip_accepted(value, match.start(), match.end(), text)
    if kind == API_KEY and not _KEY_PREFIX.match(value):
        return generic_token_is_secret(value, text, match.start())
    return True


# What `_URL_QUERY_SECRET` is made of, to find it from its parameter back.
_URL_RUN = re.compile(r"[^\s\"'<>()]+")
_HTTP_SCHEME = re.compile(r"[hH][tT][tT][pP][sS]?://")
_SECRET_PARAMETER = re.compile(rf"\b(?i:{_SECRET_NAMES})=[^&#]")
_QUERY_MARK = re.compile(r"[?#]")
_URL_START_PUNCTUATION = frozenset("0123456789+.-")
_NOT_BEFORE_A_URL = frozenset(string.ascii_letters) | _URL_START_PUNCTUATION


def _query_secret_spans(text: str) -> Iterator[tuple[int, int]]:
    """Where `_URL_QUERY_SECRET` matches, leftmost first, as its regex would from each place
    `_URL_START` allows, in one pass over each run of URL characters: its secret parameters
    and URL starts are listed once, and each parameter is matched to the leftmost URL whose
    query holds it (after the URL's first `?` or `#`, before a `#` after that). A match goes
    to the end of its run, so a run has one at most."""
    for run in _URL_RUN.finditer(text):
        low, high = run.span()
        starts = _url_queries(text, run) if "://" in run.group() else []
        index = 0
        for parameter in _SECRET_PARAMETER.finditer(text, low, high) if starts else ():
            at = parameter.start()
            while index < len(starts) and starts[index][2] is not None and starts[index][2] <= at:
                index += 1
            if index == len(starts):
                break
            first, query, _ = starts[index]
            if query < at:
                yield first, high
                break


def _url_queries(text: str, run: re.Match) -> list[tuple[int, int, int | None]]:
    """Per http(s) URL that may start in `run`: where it starts, where its query begins (its
    first `?` or `#`) and the `#` after that, which ends what its parameters may be (None:
    the run's end). The marks are listed once: a `find` per URL scanned to the end of the
    run each time."""
    low, high = run.span()
    marks = [low + m.start() for m in _QUERY_MARK.finditer(run.group())]
    fragments = [at for at in marks if text[at] == "#"]
    starts = []
    for scheme in _HTTP_SCHEME.finditer(text, low, high):
        start = scheme.start()
        while start > low and text[start - 1] in _URL_START_PUNCTUATION:
            start -= 1
        if start > 0 and text[start - 1] in _NOT_BEFORE_A_URL:
            continue
        query = _next(marks, scheme.end())
        if query is None:
            break  # nor has any URL after it in the run
        if query > scheme.end():  # a host
            starts.append((scheme.start(), query, _next(fragments, query + 1)))
    return starts


def _next(positions: list[int], at: int) -> int | None:
    """The first of the sorted `positions` at or after `at`."""
    index = bisect.bisect_left(positions, at)
    return positions[index] if index < len(positions) else None


def _spans(kind: str, text: str) -> Iterator[tuple[int, int]]:
    if kind == URL_SECRET:
        # Both forms, leftmost first; a sentence's full stop is not part of the URL.
        found = sorted([*_pattern_spans(kind, text), *_query_secret_spans(text)])
        for start, end in found:
            yield start, start + len(text[start:end].rstrip(".,;:!?"))
        return
    yield from _pattern_spans(kind, text)


def _pattern_spans(kind: str, text: str) -> Iterator[tuple[int, int]]:
    group = "v" if kind in _RUN_STARTS else 0
    pattern = _COMPILED[kind]
    position = 0
    while match := pattern.search(text, position):
        start, end = match.span(group)
        position = match.end() if match.end() > match.start() else match.start() + 1
        # A card starts as a card network's numbers do: of the 24 findings on 20,000 real
        # chats (dev), 21 did not (years `2010 2011 2012 2013`, ids, timestamps, ISBNs,
        # decimals). A row of years retried group by group (below) passed 1 time in 10.
        issued = kind != CARD or bool(_CARD_NETWORK.match(match.group(0)))
        if issued and _accept(kind, match, text):
            yield start, end
            continue
        if issued and (cut := _SHORTER.get(kind, lambda value: None)(match.group(0))):
            yield start, start + cut
            continue
        if kind == CARD and (separator := _GROUP_SEPARATOR.search(match.group(0))):
            # "order 1234 4111 1111 1111 1111": the order number was taken as the card's
            # first group and the check failed; the card may start at the next group. Each
            # retry moves on by a group, so a long run of groups stays linear.
            position = match.start() + separator.end()


def _card_before_a_following_number(value: str) -> int | None:
    """Where a card ends inside a match that took a short number after it as a last group of
    three ("4111 1111 1111 1111 123", the security code): the part before that group, where
    it passes the Luhn check."""
    cut = max(value.rfind(" "), value.rfind("-"))
    if cut > 0 and len(re.sub(r"[ -]", "", value[:cut])) >= 13 and luhn_valid(value[:cut]):
        return cut
    return None


def _iban_before_a_following_word(value: str) -> int | None:
    """Where a grouped IBAN ends inside a match that took the word after it as its last
    group ("ES91 2100 0418 4502 0005 1332 BIC", "… 3201 EUR"): the part before its last
    space, where it passes the mod-97 check. Only that one cut: trying every space made a
    hex fingerprint (`DB77 C577 9EC6 …`) an IBAN in 1 of 97 tries each."""
    cut = value.rfind(" ")
    return cut if cut > 0 and iban_valid(value[:cut]) else None


_GROUP_SEPARATOR = re.compile(r"[ -]")
# The first digits of the card networks' numbers: Mir 2200-2204 and Mastercard 2221-2720;
# American Express 34, 37, Diners 30, 36, 38, 39, JCB 35; Visa 4; Mastercard 51-55, Maestro
# 50 and 56-58, Verve 506; Discover, UnionPay, Maestro, RuPay 6; RuPay 81, 82; Troy 9792.
# Not 0, 1 (airlines' UATP), 7 (fleet cards) and the rest of 8 and 9 (national and private
# networks): numbers that start so are ids, timestamps and years far more often.
_CARD_NETWORK = re.compile(r"2[2-7]|3[04-9]|[456]|8[12]|9792")
# What a match that failed its check may still hold: the number before a word or a short
# number that the pattern took as the number's last group.
_SHORTER = {IBAN: _iban_before_a_following_word, CARD: _card_before_a_following_number}


# Characters read as their plain forms, one for one, so a finding's span is the text's:
# full-width ASCII, as Chinese and Japanese input methods type digits and `＠` (a card in
# full-width digits was left raw, and the check passed it) and the ideographic space they
# type between groups; the no-break, figure, thin and narrow no-break spaces that group
# digits in French and in numbers copied from pages; Arabic-Indic and Persian digits.
_FOLDED = {
    **{chr(code): chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)},
    **dict.fromkeys("\u00a0\u2007\u2009\u202f\u3000", " "),
    **{chr(0x0660 + digit): str(digit) for digit in range(10)},
    **{chr(0x06F0 + digit): str(digit) for digit in range(10)},
}
_FOLD = str.maketrans(_FOLDED)
_FOLDABLE = "[" + "".join(map(re.escape, _FOLDED)) + "]"


def find_in_text(
    text: str, kinds: tuple[str, ...] = tuple(PATTERNS), regions: tuple[str, ...] | None = None
) -> list[Finding]:
    """Every finding in one text, non-overlapping (earlier types in PATTERNS win). `regions`:
    where national phone numbers are read; None: the configured languages' regions."""
    findings: list[Finding] = []
    read = text.translate(_FOLD)
    # What this module wrote in place of a finding is never one: a pseudonym's digest holds
    # digits, and one of digits only that starts with 0 read as a national phone number
    # (`<EMAIL:039380540223>`; about 1 digest in 280 is all digits).
    taken: list[tuple[int, int]] = [match.span() for match in _PLACEHOLDER.finditer(read)]
    for kind in kinds:
        if kind == PHONE:
            spans = list(phone_spans(read, configured_regions() if regions is None else regions,
                                     taken))  # fmt: skip
        else:
            spans = list(_spans(kind, read))
        if not spans:
            continue
        kept = _clear_of(spans, taken)
        findings += (Finding(kind, start, end, text[start:end]) for start, end in kept)
        taken = list(heapq.merge(taken, kept)) if taken else kept
    return sorted(findings, key=lambda finding: finding.start)


def _clear_of(spans: list[tuple[int, int]], taken: list[tuple[int, int]]) -> list:
    """The spans that overlap neither a `taken` one (sorted, apart) nor one kept before
    them, in order. One walk over both: each span tested against every one taken before
    made a text of 100,000 placeholders or findings quadratic (a megabyte took 70 s)."""
    kept: list[tuple[int, int]] = []
    index, kept_until = 0, -1
    for start, end in sorted(spans):
        while index < len(taken) and taken[index][1] <= start:
            index += 1
        if (index < len(taken) and taken[index][0] < end) or start < kept_until:
            continue
        kept.append((start, end))
        kept_until = end
    return kept


# The sift in polars drops the word boundaries: a Unicode `\b` keeps the Rust regex engine
# off its fast DFA on non-ASCII text (measured: 150x slower on 175-character messages), and
# without any `\b` a pattern can only match more, so every row the exact check needs still
# reaches it (the check, in Python, keeps the boundaries).
_SIFT_PATTERNS = {kind: pattern.replace(r"\b", "") for kind, pattern in PATTERNS.items()}


def _kind_masks(texts: pl.Series, kinds: tuple[str, ...]) -> pl.DataFrame:
    """One column per type: True where its regex matches (vectorized). One regex per type,
    not one alternation of all: each keeps the engine's literal prefilter and fast DFA, and
    polars runs them in parallel (`benchmarks/bench_pii.py --corpus sharegpt`: 2.6x faster)."""
    masks = _sifted(texts, kinds)
    # The rows `find_in_text` reads folded are sifted folded too (the sift must let through
    # every row it would match); only those: folding every row cost 0.58x of the sift's speed.
    foldable = texts.fill_null("").str.contains(_FOLDABLE)
    if foldable.any():
        rows = foldable.arg_true()
        folded = _sifted(
            texts.gather(rows).str.replace_many(list(_FOLDED), list(_FOLDED.values())), kinds
        )
        masks = masks.with_columns(
            masks[kind].scatter(rows, masks[kind].gather(rows) | folded[kind]) for kind in kinds
        )
    return masks


def _sifted(texts: pl.Series, kinds: tuple[str, ...]) -> pl.DataFrame:
    text = pl.col("text").fill_null("")
    return pl.DataFrame({"text": texts}).select(
        text.str.contains(_SIFT_PATTERNS[kind]).alias(kind) for kind in kinds
    )


def candidate_mask(texts: pl.Series, kinds: tuple[str, ...] = tuple(PATTERNS)) -> pl.Series:
    """True where any type's regex matches: the rows worth a closer look (vectorized)."""
    kinds = tuple(dict.fromkeys(kinds))  # a type named twice is sifted once
    if not kinds:
        return pl.Series([False] * len(texts), dtype=pl.Boolean)
    return _kind_masks(texts, kinds).select(pl.any_horizontal(kinds)).to_series()


def _findings_by_row(
    texts: pl.Series, kinds: tuple[str, ...], regions: tuple[str, ...] | None
) -> dict[int, list[Finding]]:
    """Row index -> findings, for the rows that have any. The regexes sift the column in
    polars; a candidate row is checked and located in Python for the types whose regex
    matched it only (a type whose looser regex does not match cannot be found exactly)."""
    regions = configured_regions() if regions is None else regions
    kinds = tuple(dict.fromkeys(kinds))  # a type named twice is sifted and checked once
    if not kinds or texts.is_empty():
        return {}
    candidates = (
        _kind_masks(texts, kinds)
        .with_row_index("row")
        .with_columns(text=texts)
        .filter(pl.any_horizontal(kinds))
    )
    found = {}
    for row, text, *matched in candidates.select("row", "text", *kinds).iter_rows():
        row_kinds = tuple(kind for kind, hit in zip(kinds, matched, strict=True) if hit)
        clean_key = _clean_text_key(text, row_kinds, regions)
        if clean_key in _CLEAN_TEXTS:
            continue
        if findings := find_in_text(text, row_kinds, regions):
            found[row] = findings
        else:
            _remember_clean(clean_key)
    return found


# Candidate texts that held nothing, by a digest of the text and what it was searched for:
# a step's `no_raw_pii` check scans the texts the step has just anonymized, in the same
# process, and a text with nothing to redact comes back unchanged, so each is searched once,
# not twice (the exact checks in Python are most of a scan's time: a run of digits read as
# a phone number in every region that could hold it). A text with a finding is not kept: it
# comes back rewritten, and is searched again. Only 16-byte digests are kept, never text,
# and at most `_CLEAN_TEXTS_KEPT` of them (about 80 MB with the set's own overhead; then
# they are forgotten all at once).
_CLEAN_TEXTS: set[bytes] = set()
_CLEAN_TEXTS_KEPT = 1_000_000


def _clean_text_key(text: str, kinds: tuple[str, ...], regions: tuple[str, ...]) -> bytes:
    digest = hashlib.blake2b(repr((kinds, regions)).encode(), digest_size=16)
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()


def _remember_clean(key: bytes) -> None:
    if len(_CLEAN_TEXTS) >= _CLEAN_TEXTS_KEPT:
        _CLEAN_TEXTS.clear()
    _CLEAN_TEXTS.add(key)


def forget_clean_texts() -> None:
    """Forgets which texts were found clean (for benchmarks that time a cold search)."""
    _CLEAN_TEXTS.clear()


def detect(
    texts: pl.Series,
    kinds: tuple[str, ...] = tuple(PATTERNS),
    regions: tuple[str, ...] | None = None,
) -> list[list[Finding]]:
    """Findings per text."""
    found = _findings_by_row(texts, kinds, regions)
    return [found.get(row, []) for row in range(len(texts))]


# The personal data a source uses as an id: an email address or a phone number (a chat
# channel's user, a WhatsApp number). Ids are random tokens and digit runs by design, so the
# other types find ids, not people: about 48 in a million UUIDs hold a Luhn-valid card
# shape (`50258329-0838-4874-…`), a 16-digit numeric id passes Luhn one time in ten,
# `t-001-02-0003` is a GOV_ID's shape and `aa::1` an IPv6 address. A phone is looked for
# only in an id written like one (a `+`, a space or a parenthesis): the phone sift sends
# every id with eight digits to libphonenumber (100,000 UUID-shaped ids took 48 s). An
# email's Message-ID (`<random@mail.example.com>`) names a mail server, not a person.
_KINDS_IN_IDS = (EMAIL, PHONE)
_WRITTEN_LIKE_A_PHONE = r"[+\s()]"
_MESSAGE_ID = r"^<[^<>@\s]+@[^<>@\s]+>$"


def detect_in_ids(ids: pl.Series, kinds: tuple[str, ...] = tuple(PATTERNS)) -> list[list[Finding]]:
    """Findings per id of the types a source uses as ids (`_KINDS_IN_IDS`), among `kinds`."""
    found: list[list[Finding]] = [[] for _ in range(len(ids))]
    candidates = {
        EMAIL: ~ids.str.contains(_MESSAGE_ID),
        PHONE: ids.str.contains(_WRITTEN_LIKE_A_PHONE),
    }
    for kind in (k for k in _KINDS_IN_IDS if k in kinds):
        rows = candidates[kind].fill_null(False).arg_true().to_list()
        for row, findings in zip(rows, detect(ids.gather(rows), (kind,)), strict=True):
            found[row] = [*found[row], *findings]
    return found


def _token(kind: str, value: str, key: bytes | None) -> str:
    if key is None:
        return f"<{kind}>"
    # Of the value as it is read (`_FOLD`): a card typed in full-width digits is the card
    # typed in ASCII, and joins with it; a value without such characters is as before.
    read = value.translate(_FOLD)
    digest = hmac.new(key, read.encode(), hashlib.sha256).hexdigest()[:_TOKEN_DIGEST_CHARS]
    return f"<{kind}:{digest}>"


_TOKEN_DIGEST_CHARS = 12
# A placeholder `_token` writes: `<EMAIL>`, or `<EMAIL:3fa9c1d2e4b5>` with a key.
_PLACEHOLDER = re.compile(rf"<(?:{'|'.join(PATTERNS)})(?::[0-9a-f]{{{_TOKEN_DIGEST_CHARS}}})?>")
# How many times `anonymize` searches a text at most (see there); what a last search would
# still find stays raw, and the table's no_raw_pii check finds it and blocks the day.
_SEARCHES = 5


def anonymize(
    texts: pl.Series,
    *,
    key: bytes | None = None,
    kinds: tuple[str, ...] = tuple(PATTERNS),
    regions: tuple[str, ...] | None = None,
) -> tuple[pl.Series, Counter]:
    """Texts with every finding replaced: `<EMAIL>` (redact) or, with a key, `<EMAIL:3fa9…>`
    (pseudonymize: the same value and key give the same token). Returns the counts by type.
    Only the rows with findings are rebuilt, and searched again until nothing more is found
    or they were searched `_SEARCHES` times; the rest (and missing texts) stay as they
    are."""
    counts: Counter = Counter()
    result = texts.clone()
    found, searches = _findings_by_row(texts, kinds, regions), 1
    while found:
        rows, rewritten = list(found), []
        for row, findings in found.items():
            text, pieces, position = result[row], [], 0
            for finding in findings:
                token = _token(finding.kind, finding.value, key)
                pieces += [text[position : finding.start], token]
                position = finding.end
                counts[finding.kind] += 1
            rewritten.append("".join(pieces) + text[position:])
        result = result.scatter(rows, rewritten)
        if searches == _SEARCHES:
            break
        # A rewritten text is searched again: where libphonenumber reads several numbers as
        # one stretch it finds only the last (`_phone_segments` cuts the stretches it can
        # tell apart), and with that one replaced it finds the one before.
        again = _findings_by_row(pl.Series(rewritten, dtype=pl.String), kinds, regions)
        found, searches = {rows[index]: findings for index, findings in again.items()}, searches + 1
    return result, counts


# What a pseudonymized user id looks like: checks tell it from a raw id by this shape.
USER_PSEUDONYM_PATTERN = r"^u_[0-9a-f]{20}$"


def pseudonymize_id(value: str | None, key: bytes) -> str | None:
    """A user id as a stable keyed token, `u_` and 80 bits of HMAC-SHA256 (joins still work;
    a new key gives new tokens; without the key it cannot be reversed or recomputed)."""
    if value is None:
        return None
    return "u_" + hmac.new(key, b"user:" + value.encode(), hashlib.sha256).hexdigest()[:20]


def keyed_digest(label: str, value: str, key: bytes) -> str:
    """A keyed digest of `value` under its own label, so digests kept for one purpose (erasure
    tombstones, audit subjects) can never be joined with the analytics pseudonyms."""
    message = f"{label}:{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]
