"""A line per finished step while a run executes in this process (`analytics-assets demo`).

`execute_in_process` returns only when the run has ended, and the terminal log is kept to
warnings, so a long run would print nothing for minutes. The run's step events are stored in
the instance as they happen: a thread reads them from there, by the run id chosen up front,
and prints each finished step with its time, the time so far and an estimate of what is left.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from dagster import DagsterEventType, DagsterInstance

FINISHED = {
    DagsterEventType.STEP_SUCCESS,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.STEP_SKIPPED,
}
OUTCOME = {"STEP_SUCCESS": "done", "STEP_FAILURE": "FAILED", "STEP_SKIPPED": "skipped"}


def progress_line(
    done: int, total: int, step: str, outcome: str, step_seconds: float | None, elapsed: float
) -> str:
    """`[ 5/23]  12.3s  conversations  done in 0.4s  ETA ~43s`: the estimate assumes the
    steps left take as long on average as those done (steps that run at once overlap, so
    it errs long)."""
    left = max(total - done, 0)
    eta = f"ETA ~{elapsed / done * left:.0f}s" if done and left else "last step"
    took = f" in {step_seconds:.1f}s" if step_seconds is not None else ""
    width = len(str(total))
    return f"[{done:>{width}}/{total}] {elapsed:6.1f}s  {step:<50} {outcome}{took}  {eta}"


class StepProgress:
    """Prints the finished steps of run `run_id` while it runs (a context manager)."""

    def __init__(
        self,
        instance: DagsterInstance,
        run_id: str,
        total_steps: int,
        *,
        out: TextIO = sys.stdout,
        interval_s: float = 0.5,
    ):
        self.instance = instance
        self.run_id = run_id
        self.total_steps = total_steps
        self.out = out
        self.interval_s = interval_s
        self.done = 0
        self._cursor: str | None = None
        self._started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="step-progress", daemon=True)

    def __enter__(self) -> StepProgress:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()
        self._print_new_steps()  # what finished since the last look

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print_new_steps()

    def _print_new_steps(self) -> None:
        connection = self.instance.get_records_for_run(
            self.run_id, cursor=self._cursor, of_type=FINISHED
        )
        self._cursor = connection.cursor
        for record in connection.records:
            event = record.event_log_entry.dagster_event
            if event is None:
                continue
            self.done += 1
            duration_ms = getattr(event.event_specific_data, "duration_ms", None)
            line = progress_line(
                self.done,
                self.total_steps,
                event.step_key or "?",
                OUTCOME.get(event.event_type_value, event.event_type_value),
                duration_ms / 1000 if duration_ms is not None else None,
                time.perf_counter() - self._started,
            )
            print(line, file=self.out, flush=True)
