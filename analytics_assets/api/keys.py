"""API keys: only a SHA-256 of each key is stored; a key names its id, so checking it is one
lookup by `_id` and a constant-time comparison."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.database import Database

COLLECTION = "api_keys"
SCOPES = ("conversations:read", "analytics:read", "users:read", "webhooks:manage")
READ_SCOPES = tuple(scope for scope in SCOPES if scope.endswith(":read"))
PREFIX = "aak"
DEFAULT_RATE_PER_MINUTE = 600
MAX_RATE_PER_MINUTE = 1_000_000


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scopes: tuple[str, ...]
    rate_per_minute: int


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(
    db: Database, scopes: list[str], *, rate_per_minute: int = DEFAULT_RATE_PER_MINUTE,
    description: str = "",
) -> str:  # fmt: skip
    """A new key (shown once, never stored) with these scopes."""
    scopes = sorted({scope.strip() for scope in scopes})
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"Scopes must be among {SCOPES}, got {scopes}")
    # 0 divided by zero in the limiter (every request a 500), a negative rate refused every
    # request, and a huge one overflowed.
    if not 1 <= rate_per_minute <= MAX_RATE_PER_MINUTE:
        raise ValueError(f"The rate must be 1 to {MAX_RATE_PER_MINUTE:,} requests a minute")
    key_id = secrets.token_hex(6)
    key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    db[COLLECTION].insert_one(
        {
            "_id": key_id,
            "hash": _digest(key),
            "scopes": scopes,
            "rate_per_minute": rate_per_minute,
            "description": description,
            "created_at": datetime.now(UTC).isoformat(),
            "revoked_at": None,
        }
    )
    return key


def verify(db: Database, key: str | None) -> ApiKey | None:
    """The key's record when the key is valid and not revoked; None otherwise."""
    if not key or key.count("_") < 2 or not key.startswith(f"{PREFIX}_"):
        return None
    key_id = key.split("_", 2)[1]
    record = db[COLLECTION].find_one({"_id": key_id})
    if not record or record.get("revoked_at"):
        return None
    if not hmac.compare_digest(record["hash"], _digest(key)):
        return None
    return ApiKey(key_id, tuple(record["scopes"]), int(record["rate_per_minute"]))


def revoke(db: Database, key_id: str) -> bool:
    result = db[COLLECTION].update_one(
        {"_id": key_id}, {"$set": {"revoked_at": datetime.now(UTC).isoformat()}}
    )
    return result.matched_count == 1


def list_keys(db: Database) -> list[dict]:
    """Every key without its hash."""
    return list(db[COLLECTION].find({}, projection={"hash": False}).sort("created_at", 1))
