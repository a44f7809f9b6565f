"""Request pacing shared by every thread of a process that talks to one NocoDB token."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RequestPacer:
    """Spaces requests evenly to at most `requests_per_second`; 0 or less disables pacing.

    NocoDB Cloud allows 5 requests/s per token and blocks the token for 30 s after a 429,
    so staying under the limit is much cheaper than recovering from it.
    """

    def __init__(
        self,
        requests_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0.0
        self.waited_seconds = 0.0

    def wait(self) -> float:
        """Blocks until the caller may send its request; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
            self.waited_seconds += delay
        return delay

    def block_for(self, seconds: float) -> None:
        """Pushes every thread's next request back, e.g. after the server said 429."""
        with self._lock:
            self._next_slot = max(self._next_slot, self._clock() + seconds)
