"""Small timing and memory helpers shared by the benchmark scripts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every few milliseconds."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak_extra = 0

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_extra = max(self.peak_extra, self._proc.memory_info().rss - self._base)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_extra = max(self.peak_extra, self._proc.memory_info().rss - self._base)


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest wall time of `repeats` runs (after the first call warmed caches up)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"
