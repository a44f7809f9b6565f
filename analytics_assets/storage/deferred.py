"""Writes that run behind the step that asked for them: one background thread per process
executes them in the order they were submitted, grouped by run, and the run's last step
waits for its group.

Why: the MongoDB mirror is a copy of the lake for apps and dashboards, and on the embedded
server (nx-27017, SQLite) storing a document costs the server's own process CPU, almost none
of it in ours (a profile of a 60-day backfill, before the server committed once per batch:
about 0.3 ms a document, 82 s of a 190 s run written in line). Handed to this thread, the
server stores one step's documents on one core while the next step computes on the other;
the run's `mongo_mirror` step then waits for what is left, retries what failed and reports
the figures.

Only for runs whose steps share one process (the in-process executor): in a process per step
the step's process would end before its write. Pure: no Dagster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass
class DeferredWrite:
    """One submitted write: the asset it copies (`label`), its collection, the days whose
    slice it replaces, how many rows per day, and its outcome."""

    label: str
    collection: str
    days: tuple[str, ...]
    rows_by_day: Mapping[str, int]
    write: Callable[[], Any] | None
    future: Future | None = None
    seconds: float = 0.0
    result: Any = None
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return sum(self.rows_by_day.values())


class DeferredWrites:
    """A FIFO of writes on one thread (so two writes to one collection never interleave),
    grouped by run id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_run: dict[str, list[DeferredWrite]] = {}
        # One worker: writes keep their order, and the database server, not our process,
        # is the busy side. Its thread is joined at interpreter exit, so a process that
        # ends after a failed step still finishes what it had queued.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deferred-write")

    def submit(
        self,
        run_id: str,
        label: str,
        write: Callable[[], Any],
        *,
        collection: str = "",
        days: tuple[str, ...] = (),
        rows_by_day: Mapping[str, int] | None = None,
    ) -> DeferredWrite:
        item = DeferredWrite(
            label=label,
            collection=collection or label,
            days=tuple(days),
            rows_by_day=dict(rows_by_day or {}),
            write=write,
        )

        def run() -> None:
            started = time.perf_counter()
            try:
                item.result = write()
                # The frame the write closes over is only kept while a retry may need it.
                item.write = None
            except BaseException as error:  # handed to whoever drains the run
                # Without its traceback: its frames hold every document of the write.
                item.error = error.with_traceback(None)
            finally:
                item.seconds = time.perf_counter() - started

        with self._lock:
            self._by_run.setdefault(run_id, []).append(item)
            item.future = self._executor.submit(run)
        return item

    def pending(self, run_id: str) -> int:
        with self._lock:
            return sum(1 for item in self._by_run.get(run_id, []) if not item.future.done())

    def drain(self, run_id: str) -> list[DeferredWrite]:
        """Waits for every write of `run_id` and hands them over (in submission order); the
        run's group is forgotten, so a second drain returns nothing."""
        with self._lock:
            items = self._by_run.pop(run_id, [])
        for item in items:
            item.future.result()
        return items


def write_failed_again(
    items: list[DeferredWrite], warn: Callable[[str], None]
) -> tuple[int, list[str]]:
    """Writes each failed item once more, in line (each write is an idempotent slice
    replace), unless a later item of the same run replaced the same slice (a step retried):
    how many were written again, and those still failing."""
    again, failed, newest = 0, [], set()
    for item in reversed(items):
        slice_key = (item.label, item.days)
        superseded = slice_key in newest
        newest.add(slice_key)
        if item.error is None or superseded:
            continue
        again += 1
        warn(f"The deferred write of {item.label} failed ({type(item.error).__name__}); "
             "writing it again.")  # fmt: skip
        started = time.perf_counter()
        try:
            item.result, item.error, item.write = item.write(), None, None
        except Exception as error:  # reported to the caller, which fails or logs
            item.error = error.with_traceback(None)
            failed.append(f"{item.label}: {type(error).__name__}")
        item.seconds += time.perf_counter() - started
    return again, failed


def finish_run(run_id: str, warn: Callable[[str], None]) -> list[str]:
    """What a run's end does where its mirror step did not run (a step before it failed, the
    run was stopped): waits for the run's writes, so none lands after the run has ended and
    given its days back, and writes the failed ones once more. The writes still failing."""
    return write_failed_again(DEFERRED_WRITES.drain(run_id), warn)[1]


# The process's queue: the IO manager submits to it, the run's mirror step drains it.
DEFERRED_WRITES = DeferredWrites()
