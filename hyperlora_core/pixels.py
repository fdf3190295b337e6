"""Float images in 0..1 -> uint8 pixels, rounded to the nearest value: one conversion for everything we
render and then save, judge or compare (toy samples, evaluation images, training previews, grids).

Photos coming *in* are converted differently on purpose: `face/images.py` truncates like the authors'
node and ComfyUI's Save Image, so the published crops stay exact.
"""

from __future__ import annotations

import numpy as np
import torch


def uint8_pixels(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Any-shape float images in 0..1 (clamped) -> the same shape as uint8, `round(x * 255)` (ties to even),
    as a CPU numpy array; numpy input keeps its float precision."""
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images.detach()
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
