"""Timing and memory helpers shared by the benchmark scripts.

Every comparison in `bench/` is made the same way: the configurations run in interleaved rounds
(each round runs every configuration once, in alternating order, so a machine that gets busier or
a GPU that warms up slows all of them alike), each round gives one ratio per configuration against
the baseline measured in that same round, and the report is the median over rounds with the spread
of the middle half (interquartile range). A paired, per-round ratio cancels slow drift that a ratio
of two separate minima does not.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

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


def cpu_clock() -> float:
    """CPU seconds of this process: other processes on a shared machine do not add to them."""
    return time.process_time()


def wall_clock() -> float:
    return time.perf_counter()


@dataclass
class Stat:
    """Median and interquartile range of a list of samples."""

    median: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Stat:
        if not values:
            raise ValueError("no samples")
        if len(values) < 4:
            s = sorted(values)
            return cls(statistics.median(s), s[0], s[-1], len(s))
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(med, q1, q3, len(values))

    @property
    def half_spread(self) -> float:
        """Half the interquartile range, relative to the median (0.01 = +-1 %)."""
        return (self.q3 - self.q1) / 2 / self.median if self.median else float("nan")

    def ratio_text(self) -> str:
        return f"{self.median:.3f} +-{100 * self.half_spread:.1f}%"


@dataclass
class Rounds:
    """Per-configuration samples from :func:`interleaved`, and ratios against a baseline."""

    times: dict[str, list[float]]
    baseline: str

    def stat(self, name: str) -> Stat:
        return Stat.of(self.times[name])

    def ratio(self, name: str) -> Stat:
        """Median over rounds of (name / baseline) measured in the same round."""
        return Stat.of([a / b for a, b in zip(self.times[name], self.times[self.baseline])])


def interleaved(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    baseline: str | None = None,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = wall_clock,
    warmup: int = 1,
) -> Rounds:
    """Run every configuration once per round, in alternating order; time each call.

    `sync` (e.g. `torch.cuda.synchronize`) runs before each clock read so asynchronous GPU work
    is counted where it belongs. A function may return a float: then that is its time (for
    callers that time a part of what they run, e.g. sampler steps), not the clock's reading.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            if sync:
                sync()
            t0 = clock()
            out = fns[name]()
            if sync:
                sync()
            elapsed = clock() - t0
            times[name].append(float(out) if isinstance(out, float) else elapsed)
    return Rounds(times, baseline or names[0])


def best_of(fn: Callable[[], object], repeats: int = 3) -> float:
    """Fastest wall time of `repeats` runs (for absolute figures; ratios use :func:`interleaved`)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"
