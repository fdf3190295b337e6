"""95 % intervals by bootstrap over identities, and the verdicts that follow from them.

Every measurement of the toy world is a mean over held-out identities; identities are the unit that
varies (a second sample of people would give another mean), so intervals resample identities with
replacement. A comparison of two conditions on the same identities resamples the identities' paired
differences. A verdict is "confirmed" or "refuted" only when the difference's interval excludes zero.
Deterministic: the resampling has a fixed seed, so one input gives one interval on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
RESAMPLES = 4000
SEED = 20251207
ZERO = 1e-9
"""Below this a bound is zero: a quantile that lands on a difference of exactly 0 comes out as 1e-17 or so after
float sums, and that must not count as excluding zero."""


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval."""

    mean: float
    low: float
    high: float

    def excludes(self, value: float = 0.0) -> bool:
        return value < self.low - ZERO or value > self.high + ZERO

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def per_identity(values) -> np.ndarray:
    """`[identities, ...]` -> one number per identity (the mean over every other axis)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0 or x.shape[0] < 2:
        raise ValueError(f"an interval needs at least 2 identities; got shape {list(x.shape)}")
    return x.reshape(x.shape[0], -1).mean(1)


def _bootstrap(x: np.ndarray, resamples: int, seed: int) -> Interval:
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(resamples, len(x)))].mean(1)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(x.mean()), float(low), float(high))


def mean_interval(values, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """The mean over identities (first axis) with its 95 % percentile-bootstrap interval."""
    return _bootstrap(per_identity(values), resamples, seed)


def difference_interval(a, b, resamples: int = RESAMPLES, seed: int = SEED) -> Interval:
    """mean(a) - mean(b) over the same identities (first axis, paired), with its 95 % interval."""
    x, y = per_identity(a), per_identity(b)
    if x.shape != y.shape:
        raise ValueError(f"paired measurements need the same identities; got {len(x)} and {len(y)}")
    return _bootstrap(x - y, resamples, seed)


def verdict(difference: Interval, claim: str = "") -> str:
    """'confirmed' / 'refuted' when the interval of (claimed better - other) excludes zero, else
    'not distinguishable (difference d, 95 % CI [a, b])'."""
    if difference.low > ZERO:
        word = "confirmed"
    elif difference.high < -ZERO:
        word = "refuted"
    else:
        return (f"not distinguishable (difference {difference.mean:+.3f}, 95 % CI "
                f"[{difference.low:+.3f}, {difference.high:+.3f}])")
    return f"{word} (difference {difference.mean:+.3f}, 95 % CI [{difference.low:+.3f}, {difference.high:+.3f}])" + \
        (f": {claim}" if claim else "")
