"""Synthetic photos the stand-in face models find a face in (or none)."""

from __future__ import annotations

import numpy as np
from PIL import Image


def face_photo(index: int, size: int = 320) -> Image.Image:
    """A dark photo with one bright square 'face' (what the stand-in face detector finds); position,
    size and colour vary with `index`, so every photo gives a different embedding."""
    rng = np.random.default_rng(1000 + index)
    img = np.full((size, size, 3), 20, np.uint8) + rng.integers(0, 12, (size, size, 3), dtype=np.uint8)
    side = 70 + (index * 7) % 30
    x = 40 + (index * 37) % (size - side - 80)
    y = 40 + (index * 53) % (size - side - 80)
    colour = np.array([200 + (index * 11) % 55, 170 + (index * 23) % 80, 150 + (index * 31) % 100], np.uint8)
    img[y : y + side, x : x + side] = colour
    return Image.fromarray(img)


def no_face_photo(size: int = 320) -> Image.Image:
    return Image.fromarray(np.zeros((size, size, 3), np.uint8))
