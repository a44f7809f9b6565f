"""A PII corpus with known spans: many formats per type, in several languages, inside code
blocks and URLs, beside look-alikes that are not PII (order numbers, versions, hashes, local
addresses, URL paths). Phone numbers come per format: international, and national per
region in the separators people use (`PHONE_FORMATS`), so recall is reported per format."""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Callable

import polars as pl

from analytics_assets.privacy.pii import API_KEY, CARD, EMAIL, GOV_ID, IBAN, IP, PHONE, URL_SECRET

TEMPLATES = [
    "Please update it to {v}, thanks.",
    "Mi dato es {v} por favor revisadlo.",
    "Meine Angabe lautet {v}, danke!",
    "Voici la valeur : {v} merci.",
    "Мои данные: {v}, спасибо.",
    "こちらです {v} よろしくお願いします。",
    '```\nconfig = "{v}"\n```',
    "see https://example.com/help?ref=abc then {v}",
    "({v})",
]
LOOKALIKES = [
    "Order #4111 1111 1111 1112 has shipped.",  # fails Luhn
    "We run version 1.2.3.4 since Monday.",
    "Upgrade to v10.0.0.1 please.",
    "Commit 3f786850e387550fdab836ed7e6dc881de23001b fixed it.",
    "Checksum e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 matches.",
    "IBAN DE00 1234 5678 9012 3456 78 looks wrong.",  # bad checksum
    "Ticket ABC-12345 was closed on 2026-11-30 at 10:15.",
    "The price is 1,234.56 EUR for 3 seats.",
    "Request id 123e4567-e89b-12d3-a456-426614174000 failed.",
    "Call me maybe, or email me at the usual place.",
    "Product code 4006381333931 is out of stock.",  # an EAN barcode
    "Use the endpoint /api/v2/tables/records?limit=25.",
    "Invoice 2026-11-0042 covers 12 seats from 2026-11-01.",
    "It took 1500 ms, then 12 30 45 retries.",
    # Addresses that point at no one: any, loopback, private, link-local, documentation.
    "uvicorn main:app --host 0.0.0.0 --port 8000",
    "curl http://127.0.0.1:5000/api fails, so does 10.0.0.254 and 192.168.1.20.",
    "The router at 172.16.0.1 hands out fe80::1ff:fe23:4567:890a and 2001:db8::1.",
    "Set the DNS to 8.8.8.8 and 1.1.1.1.",
    "Subnet 200.128.1.0/24 into three blocks.",
    "std::vector<int> v; Foo::bar(); rodio::buffer::SamplesBuffer::new(x)",
    # URL paths, file paths and identifiers are no keys.
    "See https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/master/modules/"
    "ui_extra_networks_checkpoints.py for it.",
    "https://github.com/ngcc/ngcc2019/blob/master/NextGenerationCassandraCompactionGoingBeyondLCS"
    ".pdf",
    'File "/Users/jdoe/Library/Python/3.8/lib/python/site-packages/selenium/webdriver/remote.py"',
    "class BlockJUnit4ClassRunnerWithParameters extends Runner2023Base",
    # Numbers that are not phone numbers: dates, times, versions, order numbers, prices,
    # decimals, ranges, page numbers, ISSNs.
    "Order 12345 of 2023-02-24 14:57:17 was 1,234.56 EUR; v109.0.5414.87 fixed it.",
    "Scores: 0.60784314 and -0.602 41.502 -0.010, pages 9131-9137, ISSN 0967-0661.",
    "Open 0815-0830 and 09/2013 - 12/2013; see (2014) 190–200 and [20 20 18 22 20].",
]


# Phone numbers by format. National ones are read in the regions of the configured languages
# (all of DEFAULT_PHONE_LANGUAGES here); each is a valid number of its region, written with
# the separators people use: spaces, dashes, dots, slashes, brackets, none.
PHONE_FORMATS: dict[str, list[str]] = {
    "international": ["+49 151 23456789", "+1 (415) 555-0132", "+44 20 7946 0958",
                      "+33 6 12 34 56 78", "+34 612 345 678", "+81 3-1234-5678",
                      "+7 495 123-45-67", "+44 (0)20 7946 0958", "+358 40 664 6300",
                      "+380 (44) 364 55 85", "+91 93303 10694", "0049 30 12345678"],
    "DE national": ["030 12345678", "030-12345678", "03012345678", "(030) 1234 5678",
                    "030/1234 5678", "0151 23456789", "0151-234 567 89", "089 1234567",
                    "030 1234 5678"],
    "FR national": ["06 12 34 56 78", "06.12.34.56.78", "0612345678", "01-23-45-67-89",
                    "01 23 45 67 89", "06-12-34-56-78"],
    "GB national": ["020 7946 0958", "07911 123456", "0161 496 0321", "07911-123-456",
                    "02079460958", "(020) 7946 0958"],
    "US national": ["(415) 555-0132", "415-555-0132", "415.555.0132", "1-415-555-0132",
                    "415 555 0132"],
    "ES national": ["612 345 678", "91 123 45 67", "612-34-56-78", "912 34 56 78"],
    "IT national": ["06 1234 5678", "312 345 6789", "02-1234-5678", "347 123 4567"],
    "NL national": ["020-1234567", "06-12345678", "06 1234 5678", "0201234567"],
    "BR national": ["(11) 91234-5678", "(21) 2345-6789", "11 91234-5678", "021 2345 6789"],
    "PT national": ["912 345 678", "21 123 4567", "912-345-678"],
    "JP national": ["03-1234-5678", "090-1234-5678", "09012345678", "(03) 1234-5678"],
    "CN national": ["010-1234 5678", "138 0013 8000", "(010) 12345678", "0755-12345678"],
    "RU national": ["8 (495) 123-45-67", "8 912 345-67-89", "89123456789", "8-495-123-45-67"],
    "KR national": ["02-1234-5678", "010-1234-5678", "01012345678", "031 123 4567"],
    "MX national": ["55 1234 5678", "(55) 1234-5678", "33-1234-5678"],
}  # fmt: skip
# Reported, not required: bare digits with no trunk prefix are left alone by design (ids,
# timestamps and dates look the same; docs/privacy.md).
PHONE_FORMATS_NOT_COVERED = {
    "national, bare, no trunk prefix": ["4155550132", "612345678", "3123456789", "13800138000"],
}


def formats() -> dict[str, list[tuple[str, str]]]:
    """Format name -> (type, value): one format per type, per phone format."""
    found: dict[str, list[tuple[str, str]]] = {}
    for kind, items in values(random.Random(11)).items():
        if kind != PHONE:
            found[kind] = [(kind, value) for value in items]
    for name, items in {**PHONE_FORMATS, **PHONE_FORMATS_NOT_COVERED}.items():
        found[f"{PHONE} {name}"] = [(PHONE, value) for value in items]
    return found


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for index, digit in enumerate(reversed([int(c) for c in candidate])):
            if index % 2:
                digit *= 2
                digit -= 9 if digit > 9 else 0
            total += digit
        if total % 10 == 0:
            return candidate
    raise AssertionError


def iban(country: str, bban: str) -> str:
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{bban}"


def group(text: str, size: int, separator: str) -> str:
    return separator.join(text[i : i + size] for i in range(0, len(text), size))


def values(rng: random.Random) -> dict[str, list[str]]:
    cards = []
    for prefix, length in (("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("4", 13)):
        number = luhn_complete(prefix, length, rng)
        cards += [number, group(number, 4, " "), group(number, 4, "-")]
    ibans = []
    for country, bban in (("DE", "370400440532013000"), ("GB", "NWBK60161331926819"),
                          ("FR", "20041010050500013M02606"), ("ES", "21000418450200051332"),
                          ("NL", "ABNA0417164300")):  # fmt: skip
        code = iban(country, bban)
        ibans += [code, group(code, 4, " ")]
    alphabet = string.ascii_letters + string.digits
    return {
        EMAIL: ["john.doe@example.com", "maria+soporte@correo.es", "x_y@sub.domain.co.uk",
                "анна@example.ru".replace("анна", "anna"), "admin@corp.io", "a1@b2.de"],
        CARD: cards,
        IBAN: ibans,
        # Public (global) addresses only: private, loopback and documentation ones are
        # look-alikes above.
        IP: ["81.2.69.142", "93.184.216.34", "151.101.1.69", "2a00:1450:4001:82b::200e",
             "2606:2800:220:1:248:1893:25c8:1946", "2a03:2880:f12f:0083:face:b00c:0000:25de"],
        API_KEY: [
            "sk-" + "".join(rng.choice(alphabet) for _ in range(40)),
            "sk_live_" + "".join(rng.choice(alphabet) for _ in range(24)),
            "ghp_" + "".join(rng.choice(alphabet) for _ in range(36)),
            "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "xoxb-1234567890-" + "".join(rng.choice(alphabet) for _ in range(24)),
            "AIza" + "".join(rng.choice(alphabet) for _ in range(35)),
            "".join(rng.choice(alphabet) for _ in range(40)),  # an unprefixed secret
        ],
        PHONE: [value for values in PHONE_FORMATS.values() for value in values],
        GOV_ID: ["123-45-6789", "078-05-1120", "219-09-9999"],
        URL_SECRET: ["https://user:hunter2@db.example.com/prod",
                     "https://api.example.com/v1/items?access_token=abcDEF123456&x=1",
                     "postgres://admin:s3cr3t@10.1.2.3:5432/app"],
    }  # fmt: skip


def corpus(seed: int = 11, *, not_covered: bool = False) -> list[tuple[str, list[tuple[str, str]]]]:
    """(text, [(type, value), ...]) rows: each value in every template, plus look-alikes;
    with `not_covered`, also the formats reported but not required."""
    rng = random.Random(seed)
    rows = []
    extra = [v for items in PHONE_FORMATS_NOT_COVERED.values() for v in items]
    for kind, items in values(rng).items():
        for value in [*items, *(extra if kind == PHONE and not_covered else [])]:
            for template in TEMPLATES:
                rows.append((template.format(v=value), [(kind, value)]))
    rows += [(text, []) for text in LOOKALIKES for _ in range(3)]
    return rows


def score(detect: Callable[[pl.Series], list[list]], *, not_covered: bool = True) -> dict:
    """Recall per format (a value counts when a finding of its type has exactly its text)
    and precision per type (findings whose type and text are a labelled value), on the
    corpus, for any `detect` (this module's, or an older one's for comparison)."""
    rows = corpus(not_covered=not_covered)
    found = detect(pl.Series([text for text, _ in rows]))
    format_of = {item: name for name, items in formats().items() for item in items}
    hits, expected, right, reported = Counter(), Counter(), Counter(), Counter()
    for (_, truth), findings in zip(rows, found, strict=True):
        got = {(finding.kind, finding.value) for finding in findings}
        for item in truth:
            expected[format_of[item]] += 1
            hits[format_of[item]] += item in got
        for kind, value in got:
            reported[kind] += 1
            right[kind] += (kind, value) in truth
    return {
        "recall": {name: hits[name] / expected[name] for name in expected},
        "precision": {kind: right[kind] / reported[kind] for kind in reported},
    }
