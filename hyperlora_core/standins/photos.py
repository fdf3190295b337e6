"""Synthetic photos the stand-in face models find a face in (or none)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


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


def pose_picture(index: int = 0, size: int = 320) -> Image.Image:
    """A stand-in pose picture for the ControlNet workflow: a stick figure on black (`index` picks the pose)."""
    img = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(img)
    c, s = size // 2, size / 320
    arm = [(-70, -40), (70, 60), (-20, -90)][index % 3]
    d.ellipse([c - 25 * s, 40 * s, c + 25 * s, 90 * s], outline=(255, 0, 0), width=int(6 * s))
    d.line([(c, 90 * s), (c, 200 * s)], fill=(0, 255, 0), width=int(8 * s))
    d.line([(c, 120 * s), (c + arm[0] * s, 120 * s + arm[1] * s)], fill=(0, 0, 255), width=int(8 * s))
    d.line([(c, 120 * s), (c - arm[0] * s, 120 * s - arm[1] * s + 40 * s)], fill=(255, 255, 0), width=int(8 * s))
    d.line([(c, 200 * s), (c - 40 * s, 300 * s)], fill=(0, 255, 255), width=int(8 * s))
    d.line([(c, 200 * s), (c + 40 * s, 300 * s)], fill=(255, 0, 255), width=int(8 * s))
    return img
