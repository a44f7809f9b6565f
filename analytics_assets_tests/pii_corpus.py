"""A PII corpus with known spans: many formats per type, in several languages, inside code
blocks and URLs, beside look-alikes that are not PII (order numbers, versions, hashes)."""

from __future__ import annotations

import random
import string

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
]


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
        IP: ["192.168.1.20", "10.0.0.254", "8.8.8.8", "2001:db8::1",
             "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"],
        API_KEY: [
            "sk-" + "".join(rng.choice(alphabet) for _ in range(40)),
            "sk_live_" + "".join(rng.choice(alphabet) for _ in range(24)),
            "ghp_" + "".join(rng.choice(alphabet) for _ in range(36)),
            "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
            "xoxb-1234567890-" + "".join(rng.choice(alphabet) for _ in range(24)),
            "AIza" + "".join(rng.choice(alphabet) for _ in range(35)),
            "".join(rng.choice(alphabet) for _ in range(40)),  # an unprefixed secret
        ],
        PHONE: ["+49 151 23456789", "+1 (415) 555-0132", "+44 20 7946 0958",
                "+33 6 12 34 56 78", "+34 612 345 678", "+81 3-1234-5678", "+7 495 123-45-67",
                "030 1234 5678", "+44 (0)20 7946 0958", "(030) 1234 5678"],
        GOV_ID: ["123-45-6789", "078-05-1120", "219-09-9999"],
        URL_SECRET: ["https://user:hunter2@db.example.com/prod",
                     "https://api.example.com/v1/items?access_token=abcDEF123456&x=1",
                     "postgres://admin:s3cr3t@10.1.2.3:5432/app"],
    }  # fmt: skip


def corpus(seed: int = 11) -> list[tuple[str, list[tuple[str, str]]]]:
    """(text, [(type, value), ...]) rows: each value in every template, plus look-alikes."""
    rng = random.Random(seed)
    rows = []
    for kind, items in values(rng).items():
        for value in items:
            for template in TEMPLATES:
                rows.append((template.format(v=value), [(kind, value)]))
    rows += [(text, []) for text in LOOKALIKES for _ in range(3)]
    return rows
