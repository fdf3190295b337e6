"""Face detection, 106-point landmarks and ArcFace embeddings from one insightface pack.

`FaceAnalyzer.load` checks the pack folder (see packs.py), creates the ONNX sessions once (only
detection, 2D-106 landmarks and recognition; a pack's 3D-landmark and gender/age models are never
loaded), and keeps them for every later photo. Instead of `FaceAnalysis.get`, which runs every
model on every face, we call the three models ourselves, on the one face we use.

insightface versions differ in how the detector size is set: 0.7.3 reads
`detector.input_size`; >= 1.0 reads the list `detector.input_sizes` and ignores `input_size`, so
the published "retry at 512, 384, 256" loop silently did nothing there. :func:`detect_at_size`
sets both. All methods take BGR uint8 images, as insightface does.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HyperLoRAError, os_error_message
from .packs import (
    DEFAULT_PACK,
    REQUIRED_TASKS,
    embedding_space,
    find_pack,
    missing_tasks_message,
)

log = logging.getLogger(__name__)

DET_SIZES: tuple[int, ...] = (640, 512, 384, 256)
"""Detector input sizes tried in turn until a face is found (published order)."""

MAX_DETECT_SIDE = 4096
"""Larger photos are shrunk (area filter) for detection only; boxes are mapped back."""

PROVIDER_CHOICES = ("auto", "cuda", "cpu")

GPU_HINT = (
    "To run face analysis on an NVIDIA GPU, replace the CPU build of onnxruntime with onnxruntime-gpu "
    "(pip uninstall -y onnxruntime onnxruntime-gpu, then pip install onnxruntime-gpu) in ComfyUI's Python; "
    "never keep both installed."
)


@dataclass(frozen=True)
class DetectedFace:
    """One detector hit, in the coordinates of the image it was detected on."""

    bbox: np.ndarray  # [4] x1, y1, x2, y2
    kps: np.ndarray | None  # [5, 2] eyes, nose, mouth corners
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.bbox[2] - self.bbox[0]) * max(0.0, self.bbox[3] - self.bbox[1]))

    @property
    def center_x(self) -> float:
        return float(self.bbox[0] + self.bbox[2]) * 0.5

    def as_insightface(self) -> Any:
        from insightface.app.common import Face

        return Face(bbox=self.bbox, kps=self.kps, det_score=self.score)

    def shifted(self, dx: float, dy: float) -> DetectedFace:
        off = np.array([dx, dy], np.float32)
        kps = None if self.kps is None else self.kps - off
        return DetectedFace(self.bbox - np.tile(off, 2), kps, self.score)


@dataclass(frozen=True)
class Detection:
    """All faces found (detector order: best score first) and the detector size that found them."""

    faces: list[DetectedFace]
    det_size: int | None
    sizes_tried: tuple[int, ...]


def detect_at_size(detector: Any, image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Run an insightface detector at `size` x `size` on any insightface version."""
    detector.input_size = (size, size)  # insightface 0.7.3 reads this
    if hasattr(detector, "input_sizes"):  # insightface >= 1.0 reads only this list
        detector.input_sizes = [(size, size)]
    return detector.detect(image, max_num=0)


@functools.lru_cache(maxsize=1)
def cuda_works() -> bool:
    """True when onnxruntime lists CUDA and a session really runs on it (libraries present)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        options = ort.SessionOptions()
        options.log_severity_level = 4
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        return "CUDAExecutionProvider" in session.get_providers()
    except Exception as err:  # noqa: BLE001 - any failure means "not usable"
        log.info("onnxruntime CUDA probe failed: %s", err)
        return False


def resolve_providers(choice: str = "auto") -> list[str]:
    """Execution providers for a choice of "auto" (CUDA if it works, else CPU), "cuda" or "cpu"."""
    import onnxruntime as ort

    choice = str(choice).lower()
    if choice not in PROVIDER_CHOICES:
        raise HyperLoRAError(f'face analysis device "{choice}" is unknown; choose one of {", ".join(PROVIDER_CHOICES)}.')
    if choice == "cpu":
        return ["CPUExecutionProvider"]
    if choice == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise HyperLoRAError(
                f"face analysis on CUDA was requested, but this onnxruntime ({ort.__version__}) offers only "
                f"{', '.join(ort.get_available_providers())}. {GPU_HINT}"
            )
        if not cuda_works():
            raise HyperLoRAError(
                "onnxruntime-gpu is installed but could not start CUDA (its CUDA/cuDNN libraries do not match "
                "this machine; see the onnxruntime log above). Install the onnxruntime-gpu build for your CUDA "
                'version, or choose "cpu".'
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda_works() else ["CPUExecutionProvider"]


SPINNING_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def session_options(spinning: bool = False) -> Any:
    """onnxruntime session options for the face models: thread spinning off unless asked for.

    Results are the same either way (spinning only decides how idle threads wait). insightface >= 1.0
    passes these to every session it creates; 0.7.3 ignores them (its sessions keep the default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not spinning:
        for key in SPINNING_KEYS:
            options.add_session_config_entry(key, "0")
    return options


def select_face(faces: Sequence[DetectedFace], face_index: int | None, photo_number: int = 1) -> DetectedFace:
    """The largest face (`None`), or the `face_index`-th counting from the left (0 = leftmost)."""
    if not faces:
        raise HyperLoRAError(f"photo {photo_number}: no face found.")
    if face_index is None:
        return max(faces, key=lambda f: f.area)  # ties: the first (best score)
    ordered = sorted(faces, key=lambda f: f.center_x)
    if not 0 <= face_index < len(ordered):
        raise HyperLoRAError(
            f"photo {photo_number} has {len(ordered)} face(s) but face index {face_index} was asked for; "
            f"use 0..{len(ordered) - 1} (0 = leftmost) or leave it empty for the largest face."
        )
    return ordered[face_index]


def _to_faces(boxes: np.ndarray, kpss: np.ndarray | None, sx: float = 1.0, sy: float = 1.0) -> list[DetectedFace]:
    faces = []
    scale = np.array([sx, sy], np.float32)
    for i in range(boxes.shape[0]):
        bbox = (boxes[i, :4] / np.tile(scale, 2)).astype(np.float32)
        kps = None if kpss is None else (kpss[i] / scale).astype(np.float32)
        faces.append(DetectedFace(bbox, kps, float(boxes[i, 4])))
    return faces


class FaceAnalyzer:
    """The three insightface models HyperLoRA needs, loaded once; see the module docstring."""

    def __init__(self, app: Any, folder: Path, providers: list[str], det_thresh: float = 0.5) -> None:
        self.app = app
        self.folder = folder
        self.detector = app.models["detection"]
        self.landmarker = app.models["landmark_2d_106"]
        self.recognizer = app.models["recognition"]
        self.providers = providers
        self.det_thresh = det_thresh
        shape = self.detector.session.get_inputs()[0].shape
        fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
        self.fixed_det_size: int | None = int(shape[3]) if fixed else None
        rec_file = getattr(self.recognizer, "model_file", None)
        self.embedding_space = embedding_space(folder, rec_file)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        pack: str | os.PathLike = DEFAULT_PACK,
        roots: Sequence[str | os.PathLike] = (),
        providers: str = "auto",
        det_thresh: float = 0.5,
        spinning: bool = False,
    ) -> FaceAnalyzer:
        """Check `<root>/models/<pack>/` (or a folder path), then load its three models once.

        `spinning`: onnxruntime's default, where every intra-op thread of every session busy-waits for
        more work after each run. Off here: those threads (one per core, per session) kept every core
        busy after face analysis and starved what runs next in ComfyUI's process (CLIP vision, the
        hypernetwork's kernel launches); see `session_options`."""
        folder = find_pack(pack, roots)
        for model_file in sorted(folder.glob("*.onnx")):
            try:
                with open(model_file, "rb"):
                    pass
            except OSError as exc:  # unreadable, not damaged: the fix is permissions, not a download
                raise HyperLoRAError(f"face model {os_error_message(model_file, exc)}") from None
        chosen = resolve_providers(providers)
        try:
            from insightface.app import FaceAnalysis
        except ImportError as err:
            raise HyperLoRAError(
                f"insightface is not installed ({err}); install it with: pip install insightface onnxruntime"
            ) from None
        try:
            # An absolute `name` works on every insightface version (0.7.3 joins it onto root, which
            # keeps an absolute path); `root` is its grandparent so nothing is ever downloaded.
            app = FaceAnalysis(
                name=str(folder),
                root=str(folder.parent.parent),
                allowed_modules=list(REQUIRED_TASKS),
                providers=chosen,
                sess_options=session_options(spinning),
            )
        except AssertionError:  # insightface's only check: no detector among the files
            others = [t for t in REQUIRED_TASKS if t != "detection"]
            raise HyperLoRAError(missing_tasks_message(folder, others)) from None
        except Exception as err:  # onnxruntime raises several types for damaged files
            raise HyperLoRAError(
                f"could not load the face models in {folder}: {type(err).__name__}: {err}. A file may be incomplete "
                "(an interrupted download or a Git LFS pointer); download the pack again."
            ) from None
        problem = missing_tasks_message(folder, list(app.models))
        if problem:
            raise HyperLoRAError(problem)
        app.prepare(ctx_id=0, det_thresh=det_thresh, det_size=(DET_SIZES[0], DET_SIZES[0]))
        in_use = list(app.models["detection"].session.get_providers())
        if providers == "cuda" and "CUDAExecutionProvider" not in in_use:
            raise HyperLoRAError(f"face analysis was asked to run on CUDA but onnxruntime fell back to {in_use}.")
        log.info("face models %s loaded on %s", folder, in_use)
        return cls(app, folder, in_use, det_thresh)

    @property
    def pack_name(self) -> str:
        return self.folder.name

    # -- models --------------------------------------------------------------------------------
    def detect(self, bgr: np.ndarray, sizes: Sequence[int] = DET_SIZES) -> Detection:
        """Faces at the first detector size (of `sizes`) that finds any; huge photos are shrunk first."""
        if self.fixed_det_size is not None:
            sizes = (self.fixed_det_size,)  # a fixed-shape detector cannot change its input size
        h, w = bgr.shape[:2]
        image, sx, sy = bgr, 1.0, 1.0
        if max(h, w) > MAX_DETECT_SIDE:
            import cv2

            scale = MAX_DETECT_SIDE / max(h, w)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            image = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
            sx, sy = nw / w, nh / h
        tried = []
        for size in sizes:
            tried.append(int(size))
            boxes, kpss = detect_at_size(self.detector, image, int(size))
            if boxes.shape[0]:
                return Detection(_to_faces(boxes, kpss, sx, sy), int(size), tuple(tried))
        return Detection([], None, tuple(tried))

    def landmarks(self, bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The 106 2D landmarks `[106, 2]` (float32, image coordinates) of one face."""
        return np.asarray(self.landmarker.get(bgr, face.as_insightface()), dtype=np.float32)[:106, :2]

    def embedding(self, bgr: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The L2-normalised 512-d ArcFace embedding of one face (aligned by its 5 keypoints)."""
        if face.kps is None:
            raise HyperLoRAError("the face detector returned no keypoints; use a detector with 5 keypoints (SCRFD).")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-image deprecation inside face_align
            emb = np.asarray(self.recognizer.get(bgr, face.as_insightface()), dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(emb))
        if not np.isfinite(norm) or norm == 0.0:
            raise HyperLoRAError("the face recognition model returned an empty embedding for this face.")
        return emb / norm
