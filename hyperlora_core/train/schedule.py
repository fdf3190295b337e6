"""The one learning-rate schedule: a linear warm-up, then constant, a cosine, or a cosine tail.

The trainer and the toy world's small training loops share it (through `torch.optim.lr_scheduler.LambdaLR`).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def lr_lambda(kind: str, warmup: int, total: int, decay: int = 0, floor: float = 0.0) -> Callable[[int], float]:
    """lr factor per step: linear warm-up over `warmup` steps, then `constant` (1) or `cosine` (from 1 to
    `floor` at step `total`); `decay` > 0 instead keeps the factor at 1 and falls along a cosine to 0 over
    the last `decay` steps, so lengthening a finished stage with a tail leaves its earlier steps alone."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if decay:
            progress = (step - (total - decay)) / decay
            return 1.0 if progress < 0 else 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if kind == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
            return floor + (1.0 - floor) * cosine if floor else cosine
        return 1.0

    return f
