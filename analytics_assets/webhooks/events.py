"""The events a subscription can ask for, and the JSON payload each delivery carries.

A payload holds identifiers and numbers only (asset, partition, check, run id, counts): never
a user's text, a user id or a secret. Its `id` is derived from what happened (the run, the
asset, the partition), so the same occurrence always has the same id: receivers use it as an
idempotency key, and enqueueing it twice makes one delivery.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

REPORT_READY = "report.ready"
CHECK_FAILED = "check.failed"
ERASURE_DONE = "erasure.done"
SYNC_COMPLETED = "sync.completed"
EVENT_TYPES = (REPORT_READY, CHECK_FAILED, ERASURE_DONE, SYNC_COMPLETED)
PAYLOAD_VERSION = 1

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Event:
    type: str
    # What identifies the occurrence, e.g. (run id, asset, partition); hashed into the id.
    identity: tuple[str, ...]
    occurred_at: float  # epoch seconds
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}; known: {', '.join(EVENT_TYPES)}")

    @property
    def id(self) -> str:
        digest = hashlib.sha256("\x1f".join((self.type, *self.identity)).encode()).hexdigest()
        return f"evt_{digest[:24]}"

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "version": PAYLOAD_VERSION,
            "occurred_at": datetime.fromtimestamp(self.occurred_at, UTC).isoformat(),
            "data": self.data,
        }

    def body(self) -> bytes:
        """The exact bytes sent (and signed) on every attempt."""
        return json.dumps(self.payload(), sort_keys=True, separators=(",", ":")).encode()


def numbers_only(values: dict[str, Any]) -> dict[str, int | float]:
    """The int/float values of `values` (booleans are not counts), everything else dropped."""
    return {
        name: value
        for name, value in values.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }
