"""Structured PII in message text: detection with a type and a span, and anonymization
(`redact` to a typed placeholder, or `pseudonymize` with a keyed HMAC so the same value maps
to the same token and joins still work).

Vectorized: each type is one regex run by polars over the whole column; only the rare rows
that match go through Python, and only for what a regex cannot say (the Luhn check of a card
number, the mod-97 check of an IBAN, the entropy of a token).

Covered: emails, phone numbers in international and common national formats, payment cards
(Luhn), IBANs (checksum), IPv4 and IPv6 addresses, URLs carrying credentials or tokens, API
keys and secrets (known prefixes, and long high-entropy tokens), and US social security
numbers. Not covered: names, street addresses and free-text identifiers (no offline model
ships for them here).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections import Counter
from dataclasses import dataclass

import polars as pl

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
PATTERNS: dict[str, str] = {
    # Order matters: the first type to claim a span keeps it (a key inside a URL is the URL's).
    URL_SECRET: (
        r"\b[a-z][a-z0-9+.-]*://[^\s/:@\"'<>()]+:[^\s/@\"'<>()]+@[^\s\"'<>()]+"
        r"|\bhttps?://[^\s?#\"'<>()]+\?[^\s#\"'<>()]*?\b(?:access_token|token|api_key|apikey|"
        r"key|secret|password|passwd|sig|signature|auth)=[^&\s#\"'<>()]+[^\s\"'<>()]*"
    ),
    API_KEY: (
        r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|sk_(?:live|test)_[A-Za-z0-9]{16,}"
        r"|rk_(?:live|test)_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{36,}"
        r"|github_pat_[A-Za-z0-9_]{40,}|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}"
        r"|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}|glpat-[A-Za-z0-9_-]{20,}"
        r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
        # A long token of mixed letters and digits: judged by its entropy below.
        r"|\b[A-Za-z0-9+/_-]{32,}={0,2}"
    ),
    EMAIL: r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    IBAN: r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    CARD: (
        r"\b[0-9]{4}(?:[ -]?[0-9]{4}){2}[ -]?[0-9]{1,7}\b"
        r"|\b3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}\b"  # American Express: 4-6-5
    ),
    GOV_ID: r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b",
    IP: (
        rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b"
        rf"|(?:{_H}:){{7}}{_H}|(?:{_H}:){{1,7}}:(?:{_H}(?::{_H}){{0,5}})?|::(?:{_H}:){{0,6}}{_H}"
    ),
    PHONE: (
        r"(?:\+[1-9][0-9]{0,2}[ .-]?)(?:\(?[0-9]{1,4}\)?[ .-]?){2,5}[0-9]{2,4}"
        # National: a trunk 0 and area code, in parentheses only when both are there.
        r"|(?:\(0[0-9]{1,4}\)|\b0[0-9]{1,4})[ .-][0-9]{2,4}[ .-][0-9]{2,4}(?:[ .-][0-9]{2,4})?\b"
    ),
}
_COMPILED = {kind: re.compile(pattern) for kind, pattern in PATTERNS.items()}
# Context that turns a dotted quad into a version number, not an address.
_VERSION_BEFORE = re.compile(r"(?:\bv|version|ver\.?|release|build)\s*$", re.IGNORECASE)


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


def _generic_token_is_secret(token: str) -> bool:
    stripped = token.rstrip("=")
    if re.fullmatch(r"[0-9a-fA-F]+", stripped):
        return False  # commit and content hashes: identifiers, not secrets
    classes = sum(bool(re.search(p, stripped)) for p in (r"[a-z]", r"[A-Z]", r"[0-9]"))
    return classes == 3 and shannon_entropy(stripped) >= 4.0


def _accept(kind: str, match: re.Match, text: str) -> bool:
    value = match.group(0)
    if kind == CARD:
        return luhn_valid(value)
    if kind == IBAN:
        return iban_valid(value)
    if kind == IP:
        if "." in value and _VERSION_BEFORE.search(text[: match.start()]):
            return False
        # Part of a longer dotted number (1.2.3.4.5, an OID): not an address.
        if "." in value and (
            re.match(r"\.[0-9]", text[match.end() :])
            or re.search(r"[0-9]\.$", text[: match.start()])
        ):
            return False
        return "." in value or value.count(":") >= 2
    if kind == API_KEY and not re.match(
        r"(?:sk-|sk_|rk_|gh[pousr]_|github_pat_|AKIA|ASIA|xox|AIza|glpat-|eyJ)", value
    ):
        return _generic_token_is_secret(value)
    if kind == PHONE:
        return sum(ch.isdigit() for ch in value) >= 8
    return True


def find_in_text(text: str, kinds: tuple[str, ...] = tuple(PATTERNS)) -> list[Finding]:
    """Every finding in one text, non-overlapping (earlier types in PATTERNS win)."""
    findings: list[Finding] = []
    taken: list[tuple[int, int]] = []
    for kind in kinds:
        for match in _COMPILED[kind].finditer(text):
            start, end = match.span()
            if kind == URL_SECRET:  # a sentence's full stop is not part of the URL
                end -= len(match.group(0)) - len(match.group(0).rstrip(".,;:!?"))
            if any(start < t_end and t_start < end for t_start, t_end in taken):
                continue
            if _accept(kind, match, text):
                findings.append(Finding(kind, start, end, text[start:end]))
                taken.append((start, end))
    return sorted(findings, key=lambda finding: finding.start)


# The sift in polars drops the word boundaries: a Unicode `\b` keeps the Rust regex engine
# off its fast DFA on non-ASCII text (measured: 150x slower on 175-character messages), and
# without any `\b` a pattern can only match more, so every row the exact check needs still
# reaches it (the check, in Python, keeps the boundaries).
_SIFT_PATTERNS = {kind: pattern.replace(r"\b", "") for kind, pattern in PATTERNS.items()}


def candidate_mask(texts: pl.Series, kinds: tuple[str, ...] = tuple(PATTERNS)) -> pl.Series:
    """True where any type's regex matches: the rows worth a closer look (vectorized)."""
    combined = "|".join(f"(?:{_SIFT_PATTERNS[kind]})" for kind in kinds)
    return texts.fill_null("").str.contains(combined)


def _findings_by_row(texts: pl.Series, kinds: tuple[str, ...]) -> dict[int, list[Finding]]:
    """Row index -> findings, for the rows that have any. The regexes sift the column in
    polars; only candidate rows are checked and located in Python."""
    rows = candidate_mask(texts, kinds).arg_true().to_list()
    candidates = zip(rows, texts.gather(rows).to_list(), strict=True)
    found = {row: find_in_text(text, kinds) for row, text in candidates}
    return {row: findings for row, findings in found.items() if findings}


def detect(texts: pl.Series, kinds: tuple[str, ...] = tuple(PATTERNS)) -> list[list[Finding]]:
    """Findings per text."""
    found = _findings_by_row(texts, kinds)
    return [found.get(row, []) for row in range(len(texts))]


def _token(kind: str, value: str, key: bytes | None) -> str:
    if key is None:
        return f"<{kind}>"
    digest = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:12]
    return f"<{kind}:{digest}>"


def anonymize(
    texts: pl.Series, *, key: bytes | None = None, kinds: tuple[str, ...] = tuple(PATTERNS)
) -> tuple[pl.Series, Counter]:
    """Texts with every finding replaced: `<EMAIL>` (redact) or, with a key, `<EMAIL:3fa9…>`
    (pseudonymize: the same value and key give the same token). Returns the counts by type.
    Only the rows with findings are rebuilt; the rest (and missing texts) stay as they are."""
    counts: Counter = Counter()
    found = _findings_by_row(texts, kinds)
    rewritten = []
    for row, findings in found.items():
        text, pieces, position = texts[row], [], 0
        for finding in findings:
            pieces += [text[position : finding.start], _token(finding.kind, finding.value, key)]
            position = finding.end
            counts[finding.kind] += 1
        rewritten.append("".join(pieces) + text[position:])
    result = texts.clone()
    if found:
        result = result.scatter(list(found), rewritten)
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
