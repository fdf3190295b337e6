"""encode_id / encode_base end to end: real insightface + onnxruntime on the tiny stand-in pack.

CLIP is replaced here by a small deterministic callable (the ComfyUI encoder is tested in
test_clip_vision.py); everything else is the real path nodes use.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from PIL import Image

from hyperlora_core.encode import encode_base, encode_id, prepare_id
from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face import FaceAnalyzer
from hyperlora_core.face.clip_pixels import clip_pixels
from hyperlora_core.face.crops import arcface_crop, id_crop
from hyperlora_core.standins import write_tiny_face_pack


class PixelEncoder:
    """Stand-in for CLIP: tokens that are a fixed function of the pixels (so rows can be traced)."""

    image_size = 224

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def __call__(self, pixels: np.ndarray) -> torch.Tensor:
        self.calls.append(pixels.copy())
        x = torch.from_numpy(pixels).float().mean(dim=(1, 2, 3))
        return x.view(-1, 1, 1).expand(-1, 257, 1024).clone()


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory) -> FaceAnalyzer:
    root = tmp_path_factory.mktemp("insightface")
    write_tiny_face_pack(root / "models" / "antelopev2")
    return FaceAnalyzer.load("antelopev2", roots=[root], providers="cpu")


def square_photo(w: int = 512, h: int = 512, x: int = 200, y: int = 150, side: int = 100, value: int = 255):
    img = np.zeros((h, w, 3), np.uint8)
    img[y : y + side, x : x + side] = value
    return img


def comfy_batch(*arrays: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).float() / 255.0


def test_encode_id_shapes_counts_and_previews(analyzer):
    enc = PixelEncoder()
    progress = []
    cond = encode_id(comfy_batch(square_photo(), square_photo(x=60, y=300, side=120)), analyzer, enc,
                     progress=lambda d, t: progress.append((d, t)))  # fmt: skip
    assert cond.clip_tokens.shape == (2, 257, 1024) and cond.clip_tokens.dtype == torch.float32
    assert cond.id_embeds.shape == (2, 512)
    assert torch.allclose(cond.id_embeds.norm(dim=1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(cond.id_embeds[0], cond.id_embeds[1])  # different faces, different embeddings
    assert cond.face_crops.shape == (2, 224, 224, 3) and 0 <= cond.face_crops.min() and cond.face_crops.max() <= 1
    assert cond.face_counts == (1, 1) and cond.photo_indices == (0, 1) and cond.has_face == (True, True)
    assert cond.weights is None and cond.embedding_space == "standin:antelopev2"
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert len(enc.calls) == 1 and enc.calls[0].shape == (2, 224, 224, 3) and enc.calls[0].dtype == np.uint8


def test_clip_pixels_are_the_published_crop(analyzer):
    """The pixels CLIP gets equal the crop recomputed from the analyzer's landmarks."""
    photo = square_photo()
    enc = PixelEncoder()
    encode_id([photo], analyzer, enc)
    bgr = np.ascontiguousarray(photo[:, :, ::-1])
    face = analyzer.detect(bgr).faces[0]
    expected = clip_pixels(id_crop(Image.fromarray(photo), analyzer.landmarks(bgr, face)))
    np.testing.assert_array_equal(enc.calls[0][0], expected)


def test_no_face_error_names_photo_and_size(analyzer):
    blank = np.full((300, 400, 3), 30, np.uint8)  # dark and flat: no face for the stand-in
    with pytest.raises(HyperLoRAError, match=r"no face found in photo 2 \(400x300 px; detector sizes tried: 640, 512, 384, 256\)") as err:
        encode_id([square_photo(), blank], analyzer, PixelEncoder())
    # the advice names the node that has the option (One-Click and the published pack's nodes have none)
    assert 'remove this photo. (HyperLoRA Encode ID can leave such photos out: set its on_no_face to "skip".)' in str(err.value)


def test_no_face_skip_keeps_weights_of_kept_photos(analyzer):
    blank = np.full((300, 400, 3), 30, np.uint8)  # dark and flat: no face for the stand-in
    cond = encode_id([blank, square_photo(), square_photo(x=40)], analyzer, PixelEncoder(),
                     on_no_face="skip", weights=[5.0, 1.0, 3.0])  # fmt: skip
    assert cond.photo_indices == (1, 2) and cond.face_counts == (0, 1, 1) and cond.has_face == (False, True, True)
    assert cond.weights.tolist() == [1.0, 3.0]
    assert any("photo 1 (400x300 px): no face found; skipped" in w for w in cond.warnings)
    with pytest.raises(HyperLoRAError, match="no face found in any of the 2 photo"):
        encode_id([blank, blank], analyzer, PixelEncoder(), on_no_face="skip")


def test_bad_weights_and_policy(analyzer):
    with pytest.raises(HyperLoRAError, match="got 1 photo weights for 2 photos"):
        encode_id([square_photo(), square_photo()], analyzer, PixelEncoder(), weights=[1.0])
    with pytest.raises(HyperLoRAError, match='on_no_face must be "error" or "skip"'):
        encode_id([square_photo()], analyzer, PixelEncoder(), on_no_face="ignore")
    with pytest.raises(HyperLoRAError, match="face index must be empty"):
        encode_id([square_photo()], analyzer, PixelEncoder(), face_index=-1)


def _count_runs(monkeypatch) -> list[int]:
    runs = [0]
    original = onnxruntime.InferenceSession.run

    def counting(self, *args, **kwargs):
        runs[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", counting)
    return runs


def test_model_runs_per_photo(analyzer, monkeypatch):
    """Faithful path: detect, landmarks, detect again on the 2x crop, ArcFace = 4 runs; fast path 3."""
    photo = square_photo()
    runs = _count_runs(monkeypatch)
    faithful = prepare_id([photo], analyzer)
    assert runs[0] == 4
    runs[0] = 0
    fast = prepare_id([photo], analyzer, reuse_keypoints=True)
    assert runs[0] == 3
    np.testing.assert_array_equal(faithful.pixels, fast.pixels)  # the CLIP crop does not depend on it
    # the fast path embeds the crop aligned by the first detection's keypoints, shifted into the crop
    bgr = np.ascontiguousarray(photo[:, :, ::-1])
    face = analyzer.detect(bgr).faces[0]
    crop, (ox, oy) = arcface_crop(Image.fromarray(photo), analyzer.landmarks(bgr, face))
    expected = analyzer.embedding(np.ascontiguousarray(np.asarray(crop)[:, :, ::-1]), face.shifted(ox, oy))
    np.testing.assert_array_equal(fast.id_embeds[0], expected)
    assert not np.array_equal(faithful.id_embeds[0], expected)  # the faithful path detected again


def test_two_faces_largest_or_index(analyzer):
    photo = np.zeros((512, 640, 3), np.uint8)
    # two squares that fit the stand-in detector's windows exactly score the same: two faces
    photo[104:168, 56:120] = 255  # small face, left
    photo[208:336, 400:528] = 255  # large face, right
    enc = PixelEncoder()
    cond = encode_id([photo], analyzer, enc)
    assert cond.face_counts == (2,)
    largest = enc.calls[-1][0]
    encode_id([photo], analyzer, enc, face_index=1)  # 0 = leftmost, 1 = the right (large) one
    np.testing.assert_array_equal(enc.calls[-1][0], largest)
    encode_id([photo], analyzer, enc, face_index=0)
    assert not np.array_equal(enc.calls[-1][0], largest)
    with pytest.raises(HyperLoRAError, match="photo 1 has 2 face\\(s\\) but face index 2 was asked for"):
        encode_id([photo], analyzer, enc, face_index=2)


def test_mixed_sizes_list_and_base(analyzer):
    photos = [comfy_batch(square_photo()), torch.from_numpy(square_photo(w=800, h=600, x=500, y=300)).float() / 255]
    cond = encode_id(photos, analyzer, PixelEncoder())
    assert len(cond) == 2
    base = encode_base(photos, analyzer, PixelEncoder(), crop_scales="1,1,1,1", weights=[1, 2])
    assert base.clip_tokens.shape == (2, 257, 1024) and base.crops.shape == (2, 224, 224, 3)
    assert base.weights.tolist() == [1.0, 2.0]
    with pytest.raises(HyperLoRAError, match="crop scales"):
        encode_base(photos, analyzer, PixelEncoder(), crop_scales="1,1,x,1")


def test_not_a_clip_encoder(analyzer):
    with pytest.raises(HyperLoRAError, match="expected a CLIP vision model"):
        encode_id([square_photo()], analyzer, "clip")


def test_bad_inputs_through_encode_id(analyzer):
    enc = PixelEncoder()
    rgba = np.concatenate([square_photo(), np.full((512, 512, 1), 255, np.uint8)], axis=2)
    gray16 = (square_photo()[..., 0].astype(np.uint16) * 257)
    cond = encode_id([torch.from_numpy(rgba).float()[None] / 255, gray16], analyzer, enc)
    assert len(cond) == 2
    np.testing.assert_array_equal(enc.calls[-1][0], enc.calls[-1][1])  # same picture, any encoding
    with pytest.raises(HyperLoRAError, match="photo batch is empty"):
        encode_id(torch.zeros(0, 512, 512, 3), analyzer, enc)
    nan = torch.from_numpy(square_photo()).float() / 255
    nan[0, 0, 0] = float("nan")
    with pytest.raises(HyperLoRAError, match=r"photo 2 \(512x512 px\) has 1 NaN"):
        encode_id([square_photo(), nan], analyzer, enc)
    with pytest.raises(HyperLoRAError, match="photo 1 is 50x40 px"):
        encode_id([np.zeros((40, 50, 3), np.uint8)], analyzer, enc)


def test_8k_photo(analyzer):
    """7680x4320: detection runs on a shrunk copy, the crops come from the full-resolution photo."""
    big = np.zeros((4320, 7680, 3), np.uint8)
    big[2000:2800, 4000:4800] = 255
    prepared = prepare_id([big], analyzer)
    assert prepared.face_counts == (1,) and prepared.pixels.shape == (1, 224, 224, 3)
    assert prepared.pixels.max() == 255  # the bright face made it into the crop


def test_condition_feeds_the_hypernetwork(analyzer):
    from hyperlora_core.standins import random_hyperlora, sdxl_modules, small_config

    model = random_hyperlora(small_config(modules=sdxl_modules()[:2], basis_size=4, rank=2, dim=32, depth=1))
    cond = encode_id([square_photo(), square_photo(x=40)], analyzer, PixelEncoder(), weights=[1.0, 3.0])
    lora = model.generate_id_lora(cond.clip_tokens, cond.id_embeds, cond.weights)
    assert len(lora) == 2 * 4 * 3 and all(torch.isfinite(v).all() for v in lora.values())
