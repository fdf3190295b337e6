"""Turn whatever the caller has (ComfyUI IMAGE tensors, numpy arrays, PIL images) into 8-bit RGB.

Everything downstream (insightface, PIL crops, CLIP preprocessing) works on `H x W x 3` uint8,
the form the published weights were trained on. The float -> 8-bit step truncates
(`(x.clip(0, 1) * 255).astype(uint8)`) exactly like the authors' node and ComfyUI's own
SaveImage, which recovers every value ComfyUI's LoadImage produced bit for bit.

Photos are numbered from 1 in every message, as users count them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import HyperLoRAError

MIN_SIDE = 64
"""Smaller photos cannot hold a face the detector (and the 224-px CLIP crop) can use."""
FLOAT_MAX = 2.0
"""Float images are 0..1; slightly above 1 after some filters is clipped, far above is 0..255 data."""
WASHED_OUT = 0.9
"""Share of pure white pixels from which a photo is reported as washed out rather than faceless."""


def exposure_problem(rgb: np.ndarray, number: int) -> str | None:
    """Why a photo can show no face although it may hold one: almost every pixel pure white, which
    is what a 16-bit PNG through ComfyUI's Load Image, or a 0..255 image clipped to 0..1, looks like.
    Said before face detection, so the user hears the cause, not "no face"."""
    share = float((rgb == 255).all(axis=-1).mean()) if rgb.size else 0.0
    if share < WASHED_OUT:
        return None
    return (f"photo {number} is {share:.0%} pure white, so no face can be seen in it. A 16-bit PNG loaded by "
            "ComfyUI's Load Image, or a 0..255 image clipped to 0..1, looks like this: save the photo as an 8-bit "
            "PNG or JPEG, or divide the image by 255.")


def _describe(arr: np.ndarray) -> str:
    return f"{arr.shape[1]}x{arr.shape[0]} px" if arr.ndim >= 2 else f"shape {list(arr.shape)}"


def _from_pil(image: Any) -> np.ndarray:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return np.asarray(image)  # 16-bit / 32-bit single channel: scaled below
    if mode != "RGB":
        image = image.convert("RGB")  # P, L, LA, RGBA (alpha dropped), CMYK, 1, ...
    return np.asarray(image)


def _to_uint8(arr: np.ndarray, number: int) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise HyperLoRAError(
                f"photo {number} ({_describe(arr)}) has {bad} NaN or infinite pixel values; "
                "fix or replace the image that feeds this input."
            )
        top = float(arr.max()) if arr.size else 0.0
        if top > FLOAT_MAX:
            raise HyperLoRAError(
                f"photo {number} ({_describe(arr)}) has float pixel values up to {top:g}, but ComfyUI images hold "
                "0..1: it looks like a 0..255 image. Divide it by 255 in the node that made it (or load the photo "
                "with ComfyUI's Load Image)."
            )
        return (arr.clip(0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        top = int(arr.max()) if arr.size else 0
        if arr.dtype == np.uint16 or top > 255:  # 16-bit photo: round to the nearest 8-bit value
            wide = arr.astype(np.int64).clip(0, 65535)
            return ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return arr.clip(0, 255).astype(np.uint8)
    raise HyperLoRAError(f"photo {number} has pixel type {arr.dtype}; expected 8/16-bit integers or floats 0..1.")


def to_rgb8(photo: Any, number: int = 1) -> np.ndarray:
    """One photo -> contiguous `H x W x 3` uint8 RGB; `number` (1-based) is used in messages."""
    if hasattr(photo, "mode") and hasattr(photo, "convert"):  # PIL.Image
        arr = _from_pil(photo)
    elif hasattr(photo, "detach") and hasattr(photo, "cpu"):  # torch.Tensor
        arr = photo.detach().cpu().float().numpy() if photo.dtype.is_floating_point else photo.detach().cpu().numpy()
    else:
        arr = np.asarray(photo)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise HyperLoRAError(
            f"photo {number} has shape {list(arr.shape)}; expected height x width x channels "
            "(a ComfyUI IMAGE is [batch, height, width, channels])."
        )
    channels = arr.shape[2]
    if channels not in (1, 2, 3, 4):
        raise HyperLoRAError(
            f"photo {number} has {channels} channels; expected 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA). "
            "If this is a channels-first tensor, move the channel axis last."
        )
    height, width = arr.shape[:2]
    if height < MIN_SIDE or width < MIN_SIDE:
        raise HyperLoRAError(
            f"photo {number} is {width}x{height} px; photos need at least {MIN_SIDE} px on each side "
            "(a face of ~100 px or more works best). Use a larger photo."
        )
    arr = _to_uint8(arr, number)
    if channels in (1, 2):  # gray (+ alpha): replicate the gray channel, drop alpha
        arr = np.repeat(arr[:, :, :1], 3, axis=2)
    elif channels == 4:  # RGBA: drop alpha, as ComfyUI's own CLIP preprocessing does
        arr = arr[:, :, :3]
    problem = exposure_problem(arr, number)
    if problem:
        raise HyperLoRAError(problem)
    return np.ascontiguousarray(arr)


def photo_list(photos: Any) -> list[np.ndarray]:
    """A ComfyUI IMAGE batch `[B,H,W,C]`, one image, or a list of either -> list of RGB8 photos.

    A list is how a batch of mixed sizes arrives (ComfyUI batches must share one size).
    """
    items: list[Any] = []

    def add(obj: Any) -> None:
        if isinstance(obj, (list, tuple)):
            for o in obj:
                add(o)
            return
        shape = getattr(obj, "shape", None)
        if shape is not None and len(shape) == 4:  # a batch
            items.extend(obj[i] for i in range(shape[0]))
        else:
            items.append(obj)

    if photos is None:
        raise HyperLoRAError("no photos were given; connect at least one face photo.")
    add(photos)
    if not items:
        raise HyperLoRAError("the photo batch is empty; connect at least one face photo.")
    return [to_rgb8(p, i + 1) for i, p in enumerate(items)]
