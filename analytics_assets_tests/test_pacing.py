"""The request pacer, on a fake clock."""

from __future__ import annotations

import threading

from analytics_assets.nocodb.pacing import RequestPacer


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_requests_are_spaced_to_the_rate():
    clock = FakeClock()
    pacer = RequestPacer(5, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        pacer.wait()
    # The first request goes at once, the next nine 0.2 s apart.
    assert round(clock.now - 100.0, 6) == 1.8
    assert round(pacer.waited_seconds, 6) == 1.8


def test_a_throttle_pushes_back_every_caller():
    clock = FakeClock()
    pacer = RequestPacer(0, clock=clock, sleep=clock.sleep)
    pacer.wait()
    assert clock.now == 100.0  # no pacing
    pacer.block_for(30)
    pacer.wait()
    assert clock.now == 130.0


def test_pacer_is_shared_safely_between_threads():
    pacer = RequestPacer(1000)
    threads = [threading.Thread(target=lambda: [pacer.wait() for _ in range(25)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 100 requests at 1000/s take at least 99 intervals of 1 ms in all.
    assert pacer.waited_seconds >= 0.099 * 0.9
