"""Photo inputs of every shape and type become 8-bit RGB, or a clear error naming the photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face.images import photo_list, to_rgb8

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (70, 90, 3), dtype=np.uint8)


def test_comfy_image_batch_roundtrips_exactly():
    batch = torch.from_numpy(np.stack([RGB, RGB[::-1]]).astype(np.float32) / 255.0)  # LoadImage's conversion
    out = photo_list(batch)
    assert len(out) == 2 and out[0].dtype == np.uint8 and out[0].flags.c_contiguous
    np.testing.assert_array_equal(out[0], RGB)
    np.testing.assert_array_equal(out[1], RGB[::-1])


def test_float_truncates_like_the_published_node():
    x = np.full((64, 64, 3), 0.5, np.float32)  # 127.5 -> 127, as (x * 255).astype(uint8)
    assert to_rgb8(x)[0, 0, 0] == 127
    bright = np.full((64, 64, 3), 0.2, np.float32)
    bright[:8] = 1.7
    assert to_rgb8(bright)[0, 0, 0] == 255  # clipped


def test_rgba_gray_and_two_channel():
    rgba = np.concatenate([RGB, np.zeros((70, 90, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb8(rgba), RGB)  # alpha dropped, colour kept
    gray = RGB[..., 0]
    for arr in (gray, gray[..., None], np.stack([gray, np.full_like(gray, 9)], axis=2)):
        out = to_rgb8(arr)
        assert out.shape == (70, 90, 3) and (out == gray[..., None]).all()
    tensor_gray = torch.from_numpy(gray[..., None].astype(np.float32) / 255.0)[None]  # [1,H,W,1]
    np.testing.assert_array_equal(photo_list(tensor_gray)[0][..., 1], gray)


def test_sixteen_bit_arrays_and_pil_modes():
    wide = (RGB.astype(np.uint16) * 257)  # 16-bit photo of the same values
    np.testing.assert_array_equal(to_rgb8(wide), RGB)
    np.testing.assert_array_equal(to_rgb8(Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)), np.repeat(RGB[..., :1], 3, 2))
    np.testing.assert_array_equal(to_rgb8(Image.fromarray(RGB).convert("RGBA")), RGB)
    palette = Image.fromarray(RGB).convert("P")
    np.testing.assert_array_equal(to_rgb8(palette), np.asarray(palette.convert("RGB")))
    half = np.zeros((64, 64), bool)
    half[:32] = True
    assert to_rgb8(half)[0, 0, 0] == 255 and to_rgb8(half)[63, 0, 0] == 0
    assert to_rgb8(torch.ones(64, 64, 3, dtype=torch.bfloat16) * torch.tensor(half)[..., None])[0, 0, 0] == 255


def test_washed_out_and_0_255_images_are_named_not_faceless():
    from PIL import Image as PILImage

    with pytest.raises(HyperLoRAError, match=r"photo 2 .* float pixel values up to 2\d\d.*0\.\.255"):
        photo_list([torch.rand(64, 64, 3), torch.rand(64, 64, 3) * 255])
    sixteen = PILImage.fromarray((np.linspace(0, 65535, 96 * 96).reshape(96, 96)).astype(np.uint16))
    comfy_loaded = np.asarray(sixteen.convert("RGB"))  # what ComfyUI's LoadImage makes of a 16-bit PNG
    with pytest.raises(HyperLoRAError, match=r"photo 1 is \d+% pure white.*16-bit PNG"):
        to_rgb8(comfy_loaded)


def test_errors_name_the_photo():
    with pytest.raises(HyperLoRAError, match="photo batch is empty"):
        photo_list(torch.zeros(0, 64, 64, 3))
    with pytest.raises(HyperLoRAError, match="no photos"):
        photo_list(None)
    small = np.zeros((40, 50, 3), np.uint8)
    with pytest.raises(HyperLoRAError, match=r"photo 2 is 50x40 px; photos need at least 64 px"):
        photo_list([RGB, small])
    nan = RGB.astype(np.float32) / 255
    nan[3, 4, 1] = np.nan
    with pytest.raises(HyperLoRAError, match=r"photo 3 \(90x70 px\) has 1 NaN or infinite pixel values"):
        photo_list([RGB, RGB, torch.from_numpy(nan)])
    with pytest.raises(HyperLoRAError, match="photo 1 has 90 channels.*channels-first"):
        to_rgb8(np.zeros((3, 70, 90), np.float32))  # a [C, H, W] tensor
    with pytest.raises(HyperLoRAError, match="expected height x width x channels"):
        to_rgb8(np.zeros((2, 2, 2, 2, 2)))


def test_mixed_sizes_as_a_list():
    big = RNG.integers(0, 256, (120, 80, 3), dtype=np.uint8)
    out = photo_list([torch.from_numpy(RGB.astype(np.float32) / 255)[None], Image.fromarray(big)])
    assert [o.shape for o in out] == [(70, 90, 3), (120, 80, 3)]
