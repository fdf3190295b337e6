"""Metric functions on known same/different pairs of real photos shipped in wheels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.eval.metrics import ClipScorer, DlibFaces, cosine, dlib_distance


def _insightface_image(name: str) -> np.ndarray:
    import insightface

    path = Path(insightface.__file__).parent / "data" / "images" / name
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    import skimage.data

    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def dlib_faces() -> DlibFaces:
    return DlibFaces()


def test_cosine():
    assert cosine([1, 0], [2, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 3]) == pytest.approx(0.0)
    assert cosine([1, 1], [-1, -1]) == pytest.approx(-1.0)
    assert math.isnan(cosine([0, 0], [1, 0]))


def test_dlib_descriptor_same_person_close_other_person_far(dlib_faces, astronaut):
    hanks = _insightface_image("Tom_Hanks_54745.png")
    a = dlib_faces.descriptor(astronaut)
    flipped = dlib_faces.descriptor(np.ascontiguousarray(astronaut[:, ::-1]))
    other = dlib_faces.descriptor(hanks)
    assert a.shape == (128,) and other is not None
    same, different = dlib_distance(a, flipped), dlib_distance(a, other)
    assert same < 0.3  # measured 0.19; dlib's own same-person threshold is 0.6
    assert different > 0.6  # measured 0.74
    assert cosine(a, flipped) > cosine(a, other)


def test_dlib_reports_missing_faces(dlib_faces):
    blank = np.full((128, 128, 3), 127, dtype=np.uint8)
    assert dlib_faces.descriptor(blank) is None
    assert not dlib_faces.detects(blank)
    assert math.isnan(dlib_distance(None, np.zeros(128)))
    assert dlib_faces.detects(_insightface_image("t1.jpg"))  # a group photo
    with pytest.raises(HyperLoRAError, match="RGB image"):
        dlib_faces.descriptor(np.zeros((8, 8), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> ClipScorer:
    import open_clip

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    path = tmp_path_factory.mktemp("clip") / "tiny-test-clip.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return ClipScorer("tiny-test-clip", None)


def test_clip_scores_with_random_weights_are_labelled_and_consistent(tiny_clip, astronaut):
    assert tiny_clip.random_weights and "RANDOM" in tiny_clip.label
    hanks = _insightface_image("Tom_Hanks_54745.png")
    same = tiny_clip.clip_i([astronaut], [astronaut])[0]
    assert same == pytest.approx(1.0, abs=1e-5)
    mixed = tiny_clip.clip_i([astronaut, hanks], [astronaut, hanks])
    assert all(v < 1.0 - 1e-4 for v in mixed)
    t = tiny_clip.clip_t([astronaut, hanks], ["an astronaut", "a man"])
    assert len(t) == 2 and all(-1.0 <= v <= 1.0 for v in t)
    text = tiny_clip.text_features(["a", "a", "b"])
    assert float(text[0] @ text[1]) == pytest.approx(1.0, abs=1e-5)


def test_clip_scorer_rejects_a_missing_weights_file(tmp_path):
    with pytest.raises(HyperLoRAError, match="not found"):
        ClipScorer("ViT-B-32", str(tmp_path / "missing" / "open_clip.safetensors"))
