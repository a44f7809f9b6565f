"""Partition leases in the shared MongoDB: at most one run of the daily job (the runs that
pull from the source: sensor ticks, schedules, backfills) writes a given day at a time,
whichever machine it runs on. Runs without the pull (a report job, a downstream-only
materialization, a re-execution from failure) take no lease.

Dagster's run queue limits runs per `dagster/partition` tag, but a range run (a single-run
backfill) carries only `dagster/asset_partition_range_start`/`_end`, so two overlapping
range runs, or a range run and a day run inside it, would both be let through. The lease is
what serializes them: one document per (scope, day), `_id` = `<scope>:<day>`, holding the
owner (a run id) and an expiry. The unique `_id` makes taking a free day atomic (an insert
either creates the document or raises DuplicateKeyError); a held day can be taken only by
its owner (a renewal) or once it has expired (a killed worker's lease ends by itself), each
a single-document conditional update.

A run takes all of its days or none: days are taken in order, and on the first day held by
another live run the ones taken by this call are given back. Nobody holds some days while
waiting for others, so two runs cannot deadlock.

Expiry times are epoch seconds (floats): dates written through $set come back as text on
nx-27017, numbers compare the same on every server.

Pure: no Dagster (the resource and the sensors that use it live in `defs/storage/leases.py`).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date

from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

LEASES_COLLECTION = "partition_leases"
DAILY_SCOPE = "daily"


class LeaseConflictError(RuntimeError):
    """A day is leased to another live run."""

    def __init__(self, day: str, holder: str, expires: float, waited_s: float = 0.0):
        self.day, self.holder, self.expires, self.waited_s = day, holder, expires, waited_s
        left = max(0.0, expires - time.time())
        waited = f" after waiting {waited_s:.0f} s" if waited_s else ""
        super().__init__(
            f"Day {day} is being written by run {holder}{waited} (its lease runs {left:.0f} s "
            "more unless renewed). Wait for that run to end, or cancel it; a killed run's "
            "lease expires by itself."
        )


class LeaseLostError(RuntimeError):
    """A run's lease expired and another run took the day (or it was released)."""


@dataclass(frozen=True)
class Holding:
    """What `hold` obtained: the days, how long it waited and when it got them."""

    days: tuple[str, ...]
    waited_s: float
    acquired_at: float


_log = logging.getLogger(__name__)


def log_failed_renewal(owner: str, error: Exception) -> None:
    """A failed heartbeat is retried, but said: leases left unrenewed for a TTL are lost."""
    _log.warning("Could not renew the day leases of run %s (%s)", owner, type(error).__name__)


def day_key(day: date | str) -> str:
    return day.isoformat() if isinstance(day, date) else str(day)[:10]


class PartitionLeases:
    """Leases over one scope's days (`daily` for the daily partitions)."""

    def __init__(
        self,
        collection: Collection,
        *,
        scope: str = DAILY_SCOPE,
        ttl_s: float = 120.0,
        clock: Callable[[], float] = time.time,
    ):
        self.collection = collection
        self.scope = scope
        self.ttl_s = ttl_s
        self.clock = clock

    def _id(self, day: str) -> str:
        return f"{self.scope}:{day}"

    def _days(self, days: Iterable[date | str]) -> list[str]:
        return sorted({day_key(day) for day in days})

    def try_acquire(self, owner: str, days: Iterable[date | str]) -> LeaseConflictError | None:
        """Takes (or renews) every one of `days` for `owner`; None when all are held, else
        the conflict on the first day another live run holds, with this call's new leases
        given back."""
        taken: list[str] = []
        for day in self._days(days):
            now = self.clock()
            lease = {"scope": self.scope, "day": day, "owner": owner, "expires": now + self.ttl_s}
            try:
                self.collection.insert_one({"_id": self._id(day), **lease, "since": now})
                taken.append(day)
                continue
            except DuplicateKeyError:
                pass
            # Held: ours (renew, keep `since`) or expired (take over). One conditional update,
            # so of two runs taking over the same expired lease only one matches.
            mine = self.collection.update_one(
                {"_id": self._id(day), "owner": owner}, {"$set": {"expires": lease["expires"]}}
            )
            if mine.matched_count:
                continue
            taken_over = self.collection.update_one(
                {"_id": self._id(day), "expires": {"$lt": now}}, {"$set": {**lease, "since": now}}
            )
            if taken_over.matched_count:
                taken.append(day)
                continue
            holder = self.collection.find_one({"_id": self._id(day)}) or {}
            self.release(owner, taken)
            if not holder:  # released between our insert and our read: try again later
                return LeaseConflictError(day, "(just released)", now)
            return LeaseConflictError(day, holder["owner"], float(holder["expires"]))
        return None

    def hold(
        self,
        owner: str,
        days: Iterable[date | str],
        *,
        wait_s: float = 0.0,
        poll_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Holding:
        """Takes every one of `days`, waiting up to `wait_s` for other runs to release them
        (polling, with jitter so waiting runs do not retry in lockstep); raises
        LeaseConflictError naming the holder when the wait runs out."""
        wanted = self._days(days)
        started = self.clock()
        while True:
            conflict = self.try_acquire(owner, wanted)
            now = self.clock()
            if conflict is None:
                return Holding(tuple(wanted), round(now - started, 3), now)
            if now - started >= wait_s:
                raise LeaseConflictError(
                    conflict.day, conflict.holder, conflict.expires, now - started
                )
            sleep(min(poll_s * random.uniform(0.5, 1.5), max(0.0, wait_s - (now - started))))

    def renew(self, owner: str, days: Iterable[date | str] | None = None) -> int:
        """Pushes the expiry of `owner`'s leases (those of `days`, or all) a TTL ahead;
        raises LeaseLostError when one of `days` is no longer `owner`'s."""
        wanted = self._days(days) if days is not None else None
        query: dict = {"owner": owner}
        if wanted is not None:
            query["_id"] = {"$in": [self._id(day) for day in wanted]}
        expires = self.clock() + self.ttl_s
        result = self.collection.update_many(query, {"$set": {"expires": expires}})
        if wanted is not None and result.matched_count < len(wanted):
            held = {doc["day"] for doc in self.collection.find(query, {"day": 1})}
            lost = [day for day in wanted if day not in held]
            raise LeaseLostError(
                f"Run {owner} no longer holds day(s) {', '.join(lost)}: its lease expired "
                "(no heartbeat for longer than the TTL) and was released or taken over."
            )
        return result.matched_count

    def release(self, owner: str, days: Iterable[date | str] | None = None) -> int:
        """Gives back `owner`'s leases (of `days`, or all); never another owner's."""
        query: dict = {"owner": owner}
        if days is not None:
            wanted = self._days(days)
            if not wanted:
                return 0
            query["_id"] = {"$in": [self._id(day) for day in wanted]}
        return self.collection.delete_many(query).deleted_count

    def holders(self) -> dict[str, str]:
        """Day -> owner of every lease in this scope, expired or not (for the CLI and tests)."""
        return {
            doc["day"]: doc["owner"]
            for doc in self.collection.find({"scope": self.scope}, {"day": 1, "owner": 1})
        }

    @contextmanager
    def holding(
        self, owner: str, days: Iterable[date | str], *, wait_s: float = 0.0, poll_s: float = 2.0
    ) -> Iterator[Holding]:
        """`days` for `owner` while the block runs: taken (`hold`, which raises
        LeaseConflictError before the block when another owner keeps them), renewed every
        quarter TTL (`heartbeat`) and given back at the block's end, however it ends."""
        wanted = self._days(days)
        holding = self.hold(owner, wanted, wait_s=wait_s, poll_s=poll_s)
        try:
            with self.heartbeat(owner, wanted, self.ttl_s / 4):
                yield holding
        finally:
            self.release(owner, wanted)

    @contextmanager
    def heartbeat(self, owner: str, days: Iterable[date | str], interval_s: float) -> Iterator:
        """Renews `owner`'s leases of `days` every `interval_s` while the block runs; raises
        LeaseLostError at its end if a renewal found a day gone (the block's output must not
        be written then: another run may be writing that day)."""
        wanted = self._days(days)
        stop = threading.Event()
        lost: list[LeaseLostError] = []

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.renew(owner, wanted)
                except LeaseLostError as error:
                    lost.append(error)
                    return
                except Exception as error:  # a MongoDB blip: the next beat tries again
                    log_failed_renewal(owner, error)
                    continue

        thread = threading.Thread(target=beat, name=f"lease-heartbeat-{owner[:8]}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
        if lost:
            raise lost[0]
