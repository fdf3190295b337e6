"""The crops the published weights were trained on, reproduced pixel for pixel with PIL.

Every step uses the same PIL operation, in the same order, as the authors' inference code:

- PIL ``crop`` rounds float boxes (``round`` half to even) and pads outside the image with black;
- PIL ``paste`` positions are truncated with ``int()`` (so a pasted crop can sit one pixel off
  the place it was cut from, exactly as published);
- blurs are done at a 512-px scale (resize to 512x512, GaussianBlur, resize back, bicubic), so
  the blur radius grows with the face;
- crop arithmetic follows numpy 1.x promotion: sums and differences of the float32 landmarks in
  float32, everything after the first multiplication in float64.

Inputs are 8-bit RGB PIL images and 106-point landmarks (insightface ``landmark_2d_106``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import HyperLoRAError

OUTLINE_INDICES: tuple[int, ...] = (1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8, 0, 24, 23, 22, 21, 20, 19,
                                    18, 32, 31, 30, 29, 28, 27, 26, 25, 17, 101, 105, 104, 103, 102, 50, 51, 49, 48,
                                    43)  # fmt: skip
"""Face outline polygon (jaw, then brows) as indices into the 106 landmarks."""

GRAY = "#7f7f7f"
BLUR_SCALE = 512
MASK_BLUR = 15
FACE_BLUR = 45
ID_MASK_SCALE = 1.0
BASE_MASK_SCALE = 1.4
PREVIEW_SIZE = 224
"""Side of the crop previews: what CLIP ViT-L/14 sees, no more. ComfyUI keeps a node's outputs after the
prompt (float32): at 512 px a 64-photo batch's preview alone held 201 MB; at 224 px, 38.5 MB."""

Box = tuple[float, float, float, float]


def _landmarks(landmarks: np.ndarray) -> np.ndarray:
    lmk = np.asarray(landmarks, dtype=np.float32)
    if lmk.ndim != 2 or lmk.shape[0] < 106 or lmk.shape[1] < 2:
        raise HyperLoRAError(f"expected 106 face landmarks of shape [106, 2]; got {list(lmk.shape)}.")
    if not np.isfinite(lmk[:106, :2]).all():
        raise HyperLoRAError("the face landmarks contain NaN values; the face model returned garbage for this photo.")
    return lmk[:106, :2]


def clip_box(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Centre and half-side `(cx, cy, l)` of the CLIP crop: 0.75 x the landmark box, raised by l/8."""
    lmk = _landmarks(landmarks)
    x_min, y_min = lmk.min(axis=0)
    x_max, y_max = lmk.max(axis=0)
    cx = float(x_min + x_max) * 0.5
    cy = float(y_min + y_max) * 0.5
    half = float(max(x_max - x_min, y_max - y_min)) * 0.75
    if half < 2.0:
        raise HyperLoRAError(f"the detected face is only {2 * half:.1f} px wide; use a photo with a larger face.")
    cy -= half * 0.125
    return cx, cy, half


def square(cx: float, cy: float, half: float) -> Box:
    return (cx - half, cy - half, cx + half, cy + half)


def crop_origin(box: Box) -> tuple[int, int]:
    """Top-left pixel of what `Image.crop(box)` returns (PIL rounds every coordinate)."""
    return round(box[0]), round(box[1])


def _outline_mask(size: tuple[int, int], landmarks: np.ndarray, mask_scale: float) -> tuple[Image.Image, Box, Box]:
    """Full-size polygon mask, the crop box around the outline, and the mask's bounds."""
    pts = _landmarks(landmarks)[list(OUTLINE_INDICES)]
    center = pts.mean(axis=0, keepdims=True)
    poly = (pts - center) * mask_scale + center
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([(float(x), float(y)) for x, y in poly], fill=255)
    x_min, y_min = pts.min(axis=0)
    x_max, y_max = pts.max(axis=0)
    half = float(max(x_max - x_min, y_max - y_min)) * 0.8
    cx, cy = float(center[0, 0]), float(center[0, 1])
    return mask, square(cx, cy, half), (float(x_min), float(y_min), float(x_max), float(y_max))


def _blur_at_scale(image: Image.Image, radius: float) -> Image.Image:
    size = image.size
    small = image.resize((BLUR_SCALE, BLUR_SCALE), Image.Resampling.BICUBIC)
    return small.filter(ImageFilter.GaussianBlur(radius=radius)).resize(size, Image.Resampling.BICUBIC)


def _paste_position(box: Box) -> tuple[int, int]:
    return int(box[0]), int(box[1])


def remove_background(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """The face (soft-edged outline polygon) on a flat #7f7f7f image of the original size."""
    mask, box, _ = _outline_mask(image.size, landmarks, ID_MASK_SCALE)
    face = image.crop(box)
    soft = _blur_at_scale(mask.crop(box), MASK_BLUR)
    out = Image.new("RGB", image.size, GRAY)
    out.paste(face, _paste_position(box), soft)
    return out


def id_crop(
    image: Image.Image, landmarks: np.ndarray, remove_bg: bool = True, grayscale: bool = False
) -> Image.Image:
    """The square CLIP crop of the ID branch (gray background by default), RGB."""
    source = remove_background(image, landmarks) if remove_bg else image
    face = source.crop(square(*clip_box(landmarks)))
    if grayscale:
        face = face.convert("L").convert("RGB")
    return face


def arcface_crop(image: Image.Image, landmarks: np.ndarray) -> tuple[Image.Image, tuple[int, int]]:
    """The original photo cropped to twice the CLIP square (black outside), and its origin."""
    cx, cy, half = clip_box(landmarks)
    box = square(cx, cy, half * 2.0)
    return image.crop(box), crop_origin(box)


def blur_face(image: Image.Image, landmarks: np.ndarray) -> Image.Image:
    """A copy of the photo with the face (outline x1.4) replaced by a heavy blur of itself."""
    mask, box, _ = _outline_mask(image.size, landmarks, BASE_MASK_SCALE)
    blurred = _blur_at_scale(image.crop(box), FACE_BLUR)
    soft = _blur_at_scale(mask.crop(box), MASK_BLUR)
    out = image.copy()
    out.paste(blurred, _paste_position(box), soft)
    return out


def check_crop_scales(scales: Sequence[float] | str) -> tuple[float, float, float, float]:
    """Parse and check the Base-LoRA crop scales (left, right, top, bottom), e.g. "1,1,1,1"; messages echo
    the text as given (not its parsed numbers, where 1e400 would read 'inf')."""
    shown = f'"{scales}"' if isinstance(scales, str) else str(list(scales))
    if isinstance(scales, str):
        try:
            scales = [float(v) for v in scales.replace(" ", "").split(",")]
        except ValueError:
            raise HyperLoRAError(
                f'crop scales {shown} are not 4 comma-separated numbers (left,right,top,bottom), e.g. "1,1,1,1".'
            ) from None
    values = tuple(float(v) for v in scales)
    if len(values) != 4 or not all(np.isfinite(values)) or min(values) < 0 or max(values) > 20:
        raise HyperLoRAError(f"crop scales must be 4 numbers (left, right, top, bottom) between 0 and 20; got {shown}.")
    if values[0] + values[1] <= 0 or values[2] + values[3] <= 0:
        raise HyperLoRAError(f"crop scales {shown} give an empty crop; make left+right and top+bottom > 0.")
    return values  # type: ignore[return-value]


def base_crop(
    image: Image.Image,
    landmarks: np.ndarray,
    crop_scales: Sequence[float] | None = (1.0, 1.0, 1.0, 1.0),
    clamp: bool = True,
) -> Image.Image:
    """Crop around the face with per-side scales of the CLIP half-side; `None` keeps the whole photo."""
    if crop_scales is None:
        return image
    left, right, top, bottom = check_crop_scales(crop_scales)
    cx, cy, half = clip_box(landmarks)
    x1, y1, x2, y2 = cx - half * left, cy - half * top, cx + half * right, cy + half * bottom
    if clamp:
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(image.width, x2), min(image.height, y2)
    out = image.crop((x1, y1, x2, y2))
    if out.width < 1 or out.height < 1:
        raise HyperLoRAError("the Base-LoRA crop is empty (the face sits at the photo's edge); lower the crop scales.")
    return out


def preview(image: Image.Image, size: int = PREVIEW_SIZE) -> np.ndarray:
    """What CLIP sees (shortest side to `size`, centre square) as `size x size x 3` uint8."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    w, h = image.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    arr = np.asarray(image)
    top, left = (arr.shape[0] - size) // 2, (arr.shape[1] - size) // 2
    return np.ascontiguousarray(arr[top : top + size, left : left + size])
