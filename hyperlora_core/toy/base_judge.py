"""The judge of what is not identity: background colour, background pattern, clothing colour.

Next to the identity judge (`encoders.AttributeJudge`) it scores generated images for the
measurements identity alone cannot make: leakage (does the output copy the reference photo's
background and clothes?), editability (does it follow a caption that names them?) and Base
fidelity (does ID + Base-LoRA reproduce them?). Like the identity judge it is used ONLY to judge:
nothing the HyperLoRA reads or is trained against comes from it. Same CNN, its own heads and
weights, trained supervised on renders of training identities with the identity judge's
augmentations (noise, blur, brightness), so it reads generated images too.
"""

from __future__ import annotations

import numpy as np

from . import world
from .encoders import AttributeJudge

PART = "base_judge"


class BaseJudge(AttributeJudge):
    """Image -> logits for background colour (8), pattern (3), clothing colour (8)."""

    def __init__(self, width: int = 24) -> None:
        super().__init__(width=width, sizes=world.BASE_FACTOR_SIZES)


def train_base_judge(data, steps: int, seed: int = 6, log=print, device="cpu") -> BaseJudge:
    """Supervised cross-entropy on the named base factors of training-identity renders."""
    from .stages import train_judge

    return train_judge(data, steps, seed=seed, log=log, judge=BaseJudge(), labels=data.train.base_factors,
                       name="base judge", device=device)


def base_judge_accuracy(judge: BaseJudge, renders: world.Renders) -> np.ndarray:
    """Per-factor accuracy on clean renders (background colour, pattern, clothing colour)."""
    from .stages import to_tensor

    pred = judge.predict(to_tensor(renders.images)).numpy()
    return (pred == renders.base_factors).mean(0)
