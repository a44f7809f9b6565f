"""A token bucket per API key: `rate_per_minute` requests a minute on average, bursts up to
that many, refilled continuously. In-process: one API process per limit (run one worker, or
put the buckets in a shared store before scaling out)."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass


@dataclass
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int  # until the next request would pass (when refused)


class TokenBuckets:
    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill)
        self._lock = threading.Lock()

    def _refilled(self, key: str, rate_per_minute: int, now: float) -> float:
        """The key's tokens at `now` (hold the lock): full at first, refilled continuously."""
        capacity = float(rate_per_minute)
        tokens, last = self._buckets.get(key, (capacity, now))
        return min(capacity, tokens + (now - last) * (rate_per_minute / 60.0))

    def wait_s(self, key: str, rate_per_minute: int) -> int:
        """Seconds until `key` has a token again, without taking one (0: it has one)."""
        with self._lock:
            tokens = self._refilled(key, rate_per_minute, self._clock())
        per_second = rate_per_minute / 60.0
        return 0 if tokens >= 1.0 else max(1, math.ceil((1.0 - tokens) / per_second))

    def take(self, key: str, rate_per_minute: int) -> Decision:
        capacity = float(rate_per_minute)
        per_second = rate_per_minute / 60.0
        with self._lock:
            now = self._clock()
            tokens = self._refilled(key, rate_per_minute, now)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
        return Decision(
            allowed=allowed,
            limit=rate_per_minute,
            remaining=int(tokens),
            reset_s=math.ceil((capacity - tokens) / per_second),
            retry_after_s=0 if allowed else max(1, math.ceil((1.0 - tokens) / per_second)),
        )
