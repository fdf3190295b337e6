"""The published crops, checked pixel by pixel on real photos that ship in wheels.

Landmarks come from the tiny stand-in pack (real insightface code path); the crop geometry is
recomputed here from the format doc (official-format.md, "Face and CLIP preprocessing") with
numpy, and the mask / gray fill / blur are checked on pixels against an independent polygon
rasterisation (scikit-image).
"""

from __future__ import annotations

import os

import insightface
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data
from skimage.draw import polygon as raster_polygon

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face import FaceAnalyzer
from hyperlora_core.face.crops import (
    OUTLINE_INDICES,
    arcface_crop,
    base_crop,
    blur_face,
    check_crop_scales,
    clip_box,
    id_crop,
    remove_background,
)
from hyperlora_core.standins import write_tiny_face_pack

IMAGES = os.path.join(os.path.dirname(insightface.__file__), "data", "images")


def _photos() -> dict[str, np.ndarray]:
    out = {"astronaut": data.astronaut()}
    for name in ("Tom_Hanks_54745.png", "t1.jpg"):
        out[name] = np.asarray(Image.open(os.path.join(IMAGES, name)).convert("RGB"))
    return out


PHOTOS = _photos()


@pytest.fixture(scope="module")
def landmarks(tmp_path_factory) -> dict[str, np.ndarray]:
    root = tmp_path_factory.mktemp("insightface")
    write_tiny_face_pack(root / "models" / "antelopev2")
    analyzer = FaceAnalyzer.load("antelopev2", roots=[root], providers="cpu")
    out = {}
    for name, rgb in PHOTOS.items():
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        face = analyzer.detect(bgr).faces[0]
        out[name] = analyzer.landmarks(bgr, face)
    # a face near the top-left corner, so every crop reaches outside the photo
    out["corner"] = out["astronaut"] - out["astronaut"].min(axis=0) + np.array([3.0, 5.0], np.float32)
    return out


def _ref_box(lmk: np.ndarray, scale: float = 1.0) -> tuple[float, float, float]:
    lo, hi = lmk.min(axis=0).astype(np.float64), lmk.max(axis=0).astype(np.float64)
    cx, cy = (lo + hi) / 2
    half = 0.75 * max(hi - lo)
    return cx, cy - half / 8, half * scale


def _ref_crop(img: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Crop with PIL's rounding, zero (black) outside the image, written with numpy."""
    x0, y0, x1, y1 = (int(round(v)) for v in (x0, y0, x1, y1))
    out = np.zeros((y1 - y0, x1 - x0) + img.shape[2:], img.dtype)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x1, img.shape[1]), min(y1, img.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = img[sy0:sy1, sx0:sx1]
    return out


def _photo_of(name: str) -> np.ndarray:
    return PHOTOS["astronaut" if name == "corner" else name]


NAMES = [*PHOTOS, "corner"]


@pytest.mark.parametrize("name", NAMES)
def test_clip_box_and_crops_match_reference(landmarks, name):
    lmk, rgb = landmarks[name], _photo_of(name)
    cx, cy, half = _ref_box(lmk)
    np.testing.assert_allclose(clip_box(lmk), (cx, cy, half), rtol=0, atol=1e-3)
    image = Image.fromarray(rgb)
    got = np.asarray(id_crop(image, lmk, remove_bg=False))
    np.testing.assert_array_equal(got, _ref_crop(rgb, cx - half, cy - half, cx + half, cy + half))
    crop, origin = arcface_crop(image, lmk)
    np.testing.assert_array_equal(np.asarray(crop), _ref_crop(rgb, cx - 2 * half, cy - 2 * half, cx + 2 * half, cy + 2 * half))
    assert origin == (round(cx - 2 * half), round(cy - 2 * half))
    if name == "corner":
        assert origin[0] < 0 and np.asarray(crop)[:, : -origin[0]].max() == 0  # black padding


def _outline_geometry(lmk: np.ndarray, shape: tuple[int, int], scale: float):
    pts = lmk[list(OUTLINE_INDICES)].astype(np.float64)
    center = pts.mean(axis=0)
    poly = (pts - center) * scale + center
    mask = np.zeros(shape, bool)
    rr, cc = raster_polygon(poly[:, 1], poly[:, 0], shape)
    mask[rr, cc] = True
    half = 0.8 * max(pts.max(axis=0) - pts.min(axis=0))
    return mask, center, half


@pytest.mark.parametrize("name", NAMES)
def test_remove_background_pixels(landmarks, name):
    lmk, rgb = landmarks[name], _photo_of(name)
    out = np.asarray(remove_background(Image.fromarray(rgb), lmk)).astype(int)
    assert out.shape == rgb.shape
    mask, (cx, cy), half = _outline_geometry(lmk, rgb.shape[:2], 1.0)
    side = round(cx + half) - round(cx - half)
    blur = 3 * 15 * side / 512 + 3  # 3 sigma of the 512-scale blur, in photo pixels
    inside = ndimage.binary_erosion(mask, iterations=int(np.ceil(blur)))
    outside = ~ndimage.binary_dilation(mask, iterations=int(np.ceil(blur)))
    # the face is pasted at int(corner) while it was cut at round(corner): up to 1 px up/left
    dx, dy = int(cx - half) - round(cx - half), int(cy - half) - round(cy - half)
    shifted = np.full_like(out, 127)
    ys, xs = np.nonzero(inside)
    ok = (ys - dy >= 0) & (ys - dy < rgb.shape[0]) & (xs - dx >= 0) & (xs - dx < rgb.shape[1])
    ys, xs = ys[ok], xs[ok]
    if len(ys):
        shifted[ys + dy, xs + dx] = rgb[ys, xs]
        np.testing.assert_array_equal(out[ys + dy, xs + dx], shifted[ys + dy, xs + dx])
    assert (out[outside] == 127).all()  # flat #7f7f7f gray everywhere else
    band = ~inside & ~outside
    # the soft edge mixes gray with the photo (sampled up to 1 px away, +-2 for resampling)
    photo = rgb.astype(int)
    low = np.minimum(ndimage.grey_erosion(photo, size=(3, 3, 1)), 127)[band] - 2
    high = np.maximum(ndimage.grey_dilation(photo, size=(3, 3, 1)), 127)[band] + 2
    assert ((out[band] >= low) & (out[band] <= high)).all()
    assert len(np.unique(out[band])) > 10  # a real gradient, not a hard edge


def test_grayscale_is_pil_luma(landmarks):
    lmk, rgb = landmarks["astronaut"], PHOTOS["astronaut"]
    color = np.asarray(id_crop(Image.fromarray(rgb), lmk)).astype(np.int64)
    gray = np.asarray(id_crop(Image.fromarray(rgb), lmk, grayscale=True))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    luma = (color[..., 0] * 299 + color[..., 1] * 587 + color[..., 2] * 114) / 1000
    assert np.abs(gray[..., 0] - luma).max() <= 1


@pytest.mark.parametrize("name", ["astronaut", "t1.jpg", "corner"])
def test_blur_face_and_base_crop(landmarks, name):
    lmk, rgb = landmarks[name], _photo_of(name)
    blurred = np.asarray(blur_face(Image.fromarray(rgb), lmk))
    mask, (cx, cy), half = _outline_geometry(lmk, rgb.shape[:2], 1.4)
    # untouched outside the square the blur is pasted into
    x0, y0 = max(int(cx - half), 0), max(int(cy - half), 0)
    x1, y1 = round(cx + half) + 1, round(cy + half) + 1
    outside = np.ones(rgb.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(blurred[outside], rgb[outside])
    # inside the (x1.4) face polygon the photo is replaced by a heavy Gaussian blur of the face
    # square (sigma 45 at 512 px): much closer to an independent blur of it than the photo is
    inside = ndimage.binary_erosion(mask, iterations=int(3 * 15 * 2 * half / 512) + 3)
    if inside.sum() > 50:
        sx0, sy0 = round(cx - half), round(cy - half)
        square = _ref_crop(rgb, sx0, sy0, round(cx + half), round(cy + half)).astype(float)
        sigma = 45 * square.shape[0] / 512
        smooth = np.stack([ndimage.gaussian_filter(square[..., c], sigma, mode="nearest") for c in range(3)], -1)
        ys, xs = np.nonzero(inside)
        dx, dy = int(cx - half) - sx0, int(cy - half) - sy0  # pasted at int(), cut at round()
        ok = (ys - sy0 - dy >= 0) & (ys - sy0 - dy < square.shape[0]) & (xs - sx0 - dx >= 0) & (xs - sx0 - dx < square.shape[1])
        ys, xs = ys[ok], xs[ok]
        ref = smooth[ys - sy0 - dy, xs - sx0 - dx]
        assert np.abs(blurred[ys, xs] - ref).mean() < 0.5 * np.abs(rgb[ys, xs] - ref).mean()
    # base crop: per-side scales of the CLIP half-side, clamped to the photo (or black padding)
    bx, by, bl = _ref_box(lmk)
    for scales in [(1, 1, 1, 1), (2.0, 0.5, 1.0, 3.0)]:
        a, b, c, d = scales
        box = [bx - bl * a, by - bl * c, bx + bl * b, by + bl * d]
        clamped = [max(0, box[0]), max(0, box[1]), min(rgb.shape[1], box[2]), min(rgb.shape[0], box[3])]
        got = np.asarray(base_crop(Image.fromarray(blurred), lmk, scales))
        np.testing.assert_array_equal(got, _ref_crop(blurred, *clamped))
        padded = np.asarray(base_crop(Image.fromarray(blurred), lmk, scales, clamp=False))
        np.testing.assert_array_equal(padded, _ref_crop(blurred, *box))
    assert base_crop(Image.fromarray(blurred), lmk, None).size == (rgb.shape[1], rgb.shape[0])


def test_crop_scales_are_checked():
    assert check_crop_scales("1, 1.5,1,2") == (1.0, 1.5, 1.0, 2.0)
    for bad in ("1,1,1", "a,b,c,d", (1, 1, -1, 1), (0, 0, 1, 1), (1, 1, 1, 100)):
        with pytest.raises(HyperLoRAError, match="crop scales"):
            check_crop_scales(bad)


def test_degenerate_landmarks_are_refused():
    with pytest.raises(HyperLoRAError, match="106 face landmarks"):
        clip_box(np.zeros((5, 2)))
    with pytest.raises(HyperLoRAError, match="only 0.0 px wide"):
        clip_box(np.full((106, 2), 10.0))
    bad = np.full((106, 2), 10.0)
    bad[3] = np.nan
    with pytest.raises(HyperLoRAError, match="NaN"):
        clip_box(bad)
