"""FaceAnalyzer on the installed insightface (2.x) with the tiny stand-in pack, plus the 0.7.3 branch."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from skimage import data

from hyperlora_core.errors import HyperLoRAError
from hyperlora_core.face import DET_SIZES, DetectedFace, FaceAnalyzer, detect_at_size, resolve_providers, select_face
from hyperlora_core.face.analyzer import cuda_works
from hyperlora_core.standins import write_tiny_face_pack


@pytest.fixture(scope="module")
def pack_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("insightface")
    write_tiny_face_pack(root / "models" / "antelopev2", extras=True)  # 5 models, like the real pack
    return root


@pytest.fixture(scope="module")
def analyzer(pack_root) -> FaceAnalyzer:
    return FaceAnalyzer.load("antelopev2", roots=[pack_root], providers="cpu")


def square(w=640, h=512, x=200, y=150, side=100):
    img = np.zeros((h, w, 3), np.uint8)
    img[y : y + side, x : x + side] = 255
    return img


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy)


@pytest.fixture
def detector_inputs(monkeypatch):
    """Spatial sizes of every blob fed to any ONNX session."""
    sizes: list[tuple[int, int]] = []
    original = onnxruntime.InferenceSession.run

    def spy(self, output_names, feed, *args, **kwargs):
        blob = next(iter(feed.values()))
        sizes.append(tuple(blob.shape[2:]))
        return original(self, output_names, feed, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", spy)
    return sizes


def test_loads_only_the_three_models_once(pack_root, monkeypatch):
    created = []
    original = onnxruntime.InferenceSession.__init__

    def counting(self, *args, **kwargs):
        created.append(args[0] if args else kwargs.get("path_or_bytes"))
        original(self, *args, **kwargs)

    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", counting)
    an = FaceAnalyzer.load("antelopev2", roots=[pack_root], providers="cpu")
    assert set(an.app.models) == {"detection", "landmark_2d_106", "recognition"}
    assert an.providers == ["CPUExecutionProvider"] and an.embedding_space == "standin:antelopev2"
    an.detect(np.zeros((300, 300, 3), np.uint8))  # warms every detector size (2.x: one session per size)
    created.clear()  # from here on nothing new may be created
    an.detect(np.zeros((300, 300, 3), np.uint8))
    bgr = square()[:, :, ::-1].copy()
    face = an.detect(bgr).faces[0]
    an.landmarks(bgr, face)
    an.embedding(bgr, face)
    assert created == []


def _spinning(options) -> list[str | None]:
    """The spinning entries of one session's options (None: onnxruntime's default, spinning on)."""
    from hyperlora_core.face.analyzer import SPINNING_KEYS

    out = []
    for key in SPINNING_KEYS:
        try:
            out.append(options.get_session_config_entry(key) if options is not None else None)
        except RuntimeError:  # the entry was never set
            out.append(None)
    return out


def test_onnx_threads_do_not_spin_after_a_run_and_results_are_unchanged(pack_root, monkeypatch):
    """onnxruntime's default threads busy-wait after each run, one per core for each session: after face
    analysis they starved what ComfyUI's process ran next (CLIP vision, the hypernetwork's kernel launches)."""
    made = []
    original = onnxruntime.InferenceSession.__init__

    def recording(self, *args, **kwargs):
        made.append(kwargs.get("sess_options", args[1] if len(args) > 1 else None))
        original(self, *args, **kwargs)

    bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])

    def analyse(an: FaceAnalyzer) -> tuple[np.ndarray, np.ndarray]:
        face = an.detect(bgr).faces[0]
        return an.landmarks(bgr, face), an.embedding(bgr, face)

    monkeypatch.setattr(onnxruntime.InferenceSession, "__init__", recording)
    quiet = analyse(FaceAnalyzer.load("antelopev2", roots=[pack_root], providers="cpu"))
    assert made and all(_spinning(o) == ["0", "0"] for o in made), [_spinning(o) for o in made]
    made.clear()
    spinning = analyse(FaceAnalyzer.load("antelopev2", roots=[pack_root], providers="cpu", spinning=True))
    assert made and all(_spinning(o) == [None, None] for o in made)
    assert all(np.array_equal(a, b) for a, b in zip(quiet, spinning))  # how threads wait changes no number


def test_detects_the_bright_square(analyzer, detector_inputs):
    img = square()
    det = analyzer.detect(img[:, :, ::-1].copy())
    assert det.det_size == 640 and det.sizes_tried == (640,) and len(det.faces) == 1
    assert _iou(det.faces[0].bbox, [200, 150, 300, 250]) > 0.4
    assert detector_inputs == [(640, 640)]  # found at the first size: one detector run
    kps = det.faces[0].kps
    assert kps.shape == (5, 2) and (kps[:, 0].min() > 150) and (kps[:, 0].max() < 350)


def test_real_photo_gives_a_face_with_landmarks_and_embedding(analyzer):
    bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    det = analyzer.detect(bgr)
    assert det.faces and det.det_size == 640
    lmk = analyzer.landmarks(bgr, det.faces[0])
    assert lmk.shape == (106, 2) and lmk.dtype == np.float32
    x1, y1, x2, y2 = det.faces[0].bbox
    assert x1 <= lmk[:, 0].mean() <= x2 and y1 <= lmk[:, 1].mean() <= y2
    emb = analyzer.embedding(bgr, det.faces[0])
    assert emb.shape == (512,) and abs(np.linalg.norm(emb) - 1) < 1e-5


def test_fallback_really_changes_the_detector_input(analyzer, detector_inputs):
    blank = np.zeros((480, 640, 3), np.uint8)
    det = analyzer.detect(blank)
    assert det.faces == [] and det.det_size is None and det.sizes_tried == DET_SIZES
    assert detector_inputs == [(640, 640), (512, 512), (384, 384), (256, 256)]
    # the published loop set only `input_size`, which insightface >= 1.0 ignores:
    detector_inputs.clear()
    detector = analyzer.detector
    if hasattr(detector, "input_sizes"):
        detector.input_size = (256, 256)
        detector.input_sizes = [(640, 640)]
        detector.detect(blank, max_num=0)
        assert detector_inputs == [(640, 640)]


def test_boxes_change_with_detector_size(analyzer):
    bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    boxes = [tuple(np.round(detect_at_size(analyzer.detector, bgr, s)[0][0, :4], 1)) for s in DET_SIZES]
    assert len(set(boxes)) > 1


class Detector073:
    """Like insightface 0.7.3's RetinaFace: reads only `input_size`; finds a face at 384 only."""

    def __init__(self):
        self.input_size = None
        self.seen = []

    def detect(self, img, input_size=None, max_num=0, metric="default"):
        size = input_size or self.input_size
        self.seen.append(size)
        if size != (384, 384):
            return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        box = np.array([[10, 20, 110, 140, 0.9]], np.float32)
        return box, np.tile(np.array([[40, 60]], np.float32), (1, 5, 1))


def test_fallback_on_insightface_073_detector(analyzer, monkeypatch):
    fake = Detector073()
    monkeypatch.setattr(analyzer, "detector", fake)
    det = analyzer.detect(np.zeros((300, 300, 3), np.uint8))
    assert fake.seen == [(640, 640), (512, 512), (384, 384)]
    assert not hasattr(fake, "input_sizes")  # the >= 1.0 attribute is not forced onto old detectors
    assert det.det_size == 384 and det.faces[0].bbox.tolist() == [10, 20, 110, 140]
    monkeypatch.setattr(analyzer, "fixed_det_size", 512)  # a fixed-shape detector: one size only
    fake.seen.clear()
    assert analyzer.detect(np.zeros((300, 300, 3), np.uint8)).faces == [] and fake.seen == [(512, 512)]


def test_huge_photo_is_shrunk_for_detection_and_boxes_map_back(analyzer, detector_inputs, monkeypatch):
    big = np.zeros((2160, 3840, 3), np.uint8)  # 4K; the limit is lowered so the test stays light
    big[900:1300, 2000:2400] = 255
    monkeypatch.setattr("hyperlora_core.face.analyzer.MAX_DETECT_SIDE", 1920)
    det = analyzer.detect(big)
    assert det.faces
    assert _iou(det.faces[0].bbox, [2000, 900, 2400, 1300]) > 0.4  # full-resolution coordinates
    assert (det.faces[0].kps[:, 0] > 1900).all() and (det.faces[0].kps[:, 0] < 2500).all()


def test_select_face():
    def face(x1, w, score=0.9):
        return DetectedFace(np.array([x1, 0, x1 + w, w], np.float32), None, score)

    faces = [face(300, 50), face(10, 80), face(200, 80, 0.5)]
    assert select_face(faces, None) is faces[1]  # largest; ties -> best score (first)
    assert select_face(faces, 0) is faces[1] and select_face(faces, 2) is faces[0]  # left to right
    with pytest.raises(HyperLoRAError, match="photo 4 has 3 face\\(s\\) but face index 3"):
        select_face(faces, 3, photo_number=4)


def test_providers():
    assert resolve_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(HyperLoRAError, match='face analysis device "gpu" is unknown'):
        resolve_providers("gpu")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert resolve_providers("auto") == ["CPUExecutionProvider"] and not cuda_works()
        with pytest.raises(HyperLoRAError, match="onnxruntime-gpu"):
            resolve_providers("cuda")
    else:  # a GPU build: auto picks CUDA exactly when a session really runs on it
        assert ("CUDAExecutionProvider" in resolve_providers("auto")) == cuda_works()
