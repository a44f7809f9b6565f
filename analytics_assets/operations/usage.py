"""What one step costs: CPU seconds, wall seconds, its peak resident memory and rows per
second, measured around the step's body.

Pure: the standard library only, no Dagster.

CPU is the process's (`time.process_time()`), so it counts every thread of it, polars'
worker pool included: a step that runs polars on eight cores for one second reports about
eight CPU seconds. Steps run one at a time per process (the in-process executor runs them in
turn, the multiprocess one gives each its own process), so the figure is the step's.

Peak memory: `getrusage(RUSAGE_SELF).ru_maxrss` is the process's peak since it started, not
the step's. On Linux the kernel's own high-water mark (VmHWM) can be reset to the current
resident size by writing 5 to /proc/self/clear_refs, so resetting it when the step starts
and reading it when it ends gives the highest resident memory while the step ran, exactly
and at no cost (sampling RSS from a thread could miss a short spike; tracemalloc does not
see polars' allocations and slows it down). Where the reset is not allowed (not Linux, a
locked-down /proc) the process's lifetime peak is reported instead, under a name that says
so: `process_peak_rss_mb` instead of `peak_rss_mb`. The peak includes what the process held
when the step started; `peak_rss_growth_mb` is what the step added on top of that. The reset
is the process's: after it, `getrusage`'s `ru_maxrss` too starts again from the current size.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_PROC_SELF = Path("/proc/self")
STEP_PEAK = "peak_rss_mb"
PROCESS_PEAK = "process_peak_rss_mb"


def _reset_peak_rss() -> int | None:
    """Sets the kernel's high-water mark of this process to its current resident size and
    returns that size (KiB); None where that is not possible."""
    try:
        (_PROC_SELF / "clear_refs").write_text("5")
    except OSError:
        return None
    return _vm_hwm_kib()


def _vm_hwm_kib() -> int | None:
    try:
        status = (_PROC_SELF / "status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _process_peak_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kilobytes on Linux, bytes on macOS.
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


@dataclass
class StepUsage:
    """Started where a step's work begins; `figures(rows)` where it ends."""

    cpu_started: float
    wall_started: float
    # The resident size when the step started, where the peak could be reset to it.
    rss_started_kib: int | None

    @classmethod
    def start(cls) -> StepUsage:
        rss_started_kib = _reset_peak_rss()
        return cls(time.process_time(), time.perf_counter(), rss_started_kib)

    @property
    def peak_is_the_steps(self) -> bool:
        return self.rss_started_kib is not None

    def peak_rss(self) -> tuple[str, float]:
        """(metadata name, MiB): the step's peak where it could be measured, else the
        process's, named as such."""
        if self.peak_is_the_steps:
            high_water = _vm_hwm_kib()
            if high_water is not None:
                return STEP_PEAK, round(high_water / 1024, 1)
        return PROCESS_PEAK, round(_process_peak_mib(), 1)

    def figures(self, rows: int) -> dict[str, float | int | None]:
        """CPU and wall seconds since `start`, the peak resident memory, and `rows` (what
        the step processed) per wall second."""
        cpu_seconds = time.process_time() - self.cpu_started
        wall_seconds = time.perf_counter() - self.wall_started
        peak_name, peak_mib = self.peak_rss()
        # The peak counts what the process held before the step (the code, other assets'
        # frames still referenced); the growth is what the step itself added at its peak.
        growth = (
            {"peak_rss_growth_mb": round(max(peak_mib - self.rss_started_kib / 1024, 0.0), 1)}
            if peak_name == STEP_PEAK and self.rss_started_kib is not None
            else {}
        )
        return {
            "cpu_seconds": round(cpu_seconds, 3),
            "wall_seconds": round(wall_seconds, 3),
            peak_name: peak_mib,
            **growth,
            "rows": rows,
            "rows_per_second": round(rows / wall_seconds, 1) if wall_seconds > 0 else None,
        }
