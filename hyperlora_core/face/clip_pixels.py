"""CLIP image preprocessing exactly as the weights were trained (transformers' PIL image processor).

`CLIPImageProcessor` (transformers 4.x, the PIL path; `CLIPImageProcessorPil` in 5.x) does, on the
8-bit image: convert to RGB; resize so the shortest side is `size` with PIL bicubic, the long side
being ``int(size * long / short)`` (truncated) and no resize at all when the short side already
fits; centre-crop `size` x `size` (offsets ``(H - size) // 2``); scale to [0, 1]; normalise with
CLIP's mean and std. ComfyUI's own `clip_preprocess` resamples with torch's antialiased bicubic,
which differs by up to 0.07 in normalised units, so we resample here and hand ComfyUI an image
that already has the model's size: `clip_preprocess` then only rescales and normalises.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

CLIP_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_pixels(image: Image.Image, size: int = CLIP_SIZE) -> np.ndarray:
    """Resize (shortest side) and centre-crop one PIL image -> `size x size x 3` uint8."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short != size:
        new_long = int(size * long / short)
        new_size = (size, new_long) if w <= h else (new_long, size)
        image = image.resize(new_size, resample=Image.Resampling.BICUBIC)
    arr = np.asarray(image)
    top = (arr.shape[0] - size) // 2
    left = (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top : top + size, left : left + size])


def clip_normalize(
    pixels: np.ndarray | torch.Tensor, mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD
) -> torch.Tensor:
    """uint8 `[N, H, W, 3]` -> float32 `[N, 3, H, W]` model input (for encoders outside ComfyUI)."""
    x = torch.tensor(np.asarray(pixels)).float().div(255.0).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s
