"""CLIP preprocessing: equal to the PIL image processor the weights were trained with, and not
resampled a second time by ComfyUI's own `clip_preprocess`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hyperlora_core.face.clip_pixels import CLIP_MEAN, CLIP_STD, clip_normalize, clip_pixels

SHAPES = [(181, 300), (300, 181), (224, 224), (224, 400), (500, 500), (100, 101), (1000, 230)]


def _photo(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)  # smooth-ish content
    return Image.fromarray(base).resize((w, h), Image.Resampling.BILINEAR)


def _pil_reference(image: Image.Image) -> np.ndarray:
    """Written from the transformers 4.x CLIPImageProcessor rules: float64 maths, then float32."""
    image = image.convert("RGB")
    w, h = image.size
    if min(w, h) != 224:
        if w <= h:
            image = image.resize((224, int(224 * h / w)), Image.BICUBIC)
        else:
            image = image.resize((int(224 * w / h), 224), Image.BICUBIC)
    a = np.asarray(image).astype(np.float64)
    top, left = (a.shape[0] - 224) // 2, (a.shape[1] - 224) // 2
    a = a[top : top + 224, left : left + 224] / 255.0
    a = (a - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    return a.transpose(2, 0, 1).astype(np.float32)


def _transformers_pil_processor():
    # The shared env's torchaudio was built for another torch; transformers imports it eagerly
    # (processing_utils -> audio_utils). Tell transformers it is absent; nothing here needs audio.
    import transformers.utils as tu
    import transformers.utils.import_utils as iu

    tu.is_torchaudio_available = iu.is_torchaudio_available = lambda: False
    import transformers
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls()


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_pil_reference(shape):
    img = _photo(*shape)
    ours = clip_normalize(clip_pixels(img)[None])[0].numpy()
    np.testing.assert_allclose(ours, _pil_reference(img), atol=1e-6, rtol=0)


def test_matches_transformers_pil_processor():
    processor = _transformers_pil_processor()
    for i, shape in enumerate(SHAPES):
        img = _photo(*shape, seed=i)
        expected = processor(img, return_tensors="np").pixel_values[0]
        ours = clip_normalize(clip_pixels(img)[None])[0].numpy()
        np.testing.assert_allclose(ours, expected, atol=1e-6, rtol=0)


def test_grayscale_input_is_replicated():
    gray = _photo(300, 181).convert("L")
    px = clip_pixels(gray)
    assert px.shape == (224, 224, 3) and np.array_equal(px[..., 0], px[..., 2])


def test_comfy_clip_preprocess_does_not_resample_our_pixels():
    import comfy.clip_vision

    pixels = np.stack([clip_pixels(_photo(*s, seed=i)) for i, s in enumerate(SHAPES[:3])])
    comfy_in = torch.from_numpy(pixels).float() / 255.0  # what ComfyClipEncoder feeds encode_image
    comfy_out = comfy.clip_vision.clip_preprocess(comfy_in, size=224, mean=list(CLIP_MEAN), std=list(CLIP_STD))
    torch.testing.assert_close(comfy_out, clip_normalize(pixels), atol=1e-6, rtol=0)
    # ...whereas ComfyUI resampling a non-224 image itself differs visibly (why we resample first)
    raw = torch.tensor(np.asarray(_photo(181, 300))).float()[None] / 255.0
    theirs = comfy.clip_vision.clip_preprocess(raw, mean=list(CLIP_MEAN), std=list(CLIP_STD))
    assert (theirs - clip_normalize(clip_pixels(_photo(181, 300))[None])).abs().max() > 0.01
