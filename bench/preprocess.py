"""Face preprocessing: ONNX model runs and wall time per photo, ours vs the published flow.

Both flows run in this process on the same photos with the tiny stand-in pack (all five models,
as in antelopev2), so the ratios are fair; absolute times of real models are far larger.

- published: `FaceAnalysis.get` (every model on every face) in the authors' loop over detector
  sizes 640, 512, 384, 256, then `FaceAnalysis.get` again on the 2x crop for the embedding;
- ours: `prepare_id` (detect with size fallback, landmarks of the chosen face, detect again on
  the 2x crop, ArcFace), and the `reuse_keypoints=True` variant without the second detection.

Model runs are counted by wrapping `onnxruntime.InferenceSession.run` (every session, including
insightface 2.x's per-size detector sessions). The last line is `onnx_runs_per_photo=<n>` for our
default (faithful) flow.

    python bench/preprocess.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnxruntime  # noqa: E402
from PIL import Image  # noqa: E402

from hyperlora_core.encode import prepare_id  # noqa: E402
from hyperlora_core.face import FaceAnalyzer  # noqa: E402
from hyperlora_core.face.clip_pixels import clip_pixels  # noqa: E402
from hyperlora_core.face.crops import arcface_crop, id_crop  # noqa: E402
from hyperlora_core.standins import write_tiny_face_pack  # noqa: E402

RUNS = [0]


def _count_runs() -> None:
    original = onnxruntime.InferenceSession.run

    def counting(self, *args, **kwargs):
        RUNS[0] += 1
        return original(self, *args, **kwargs)

    onnxruntime.InferenceSession.run = counting


def _photos() -> list[np.ndarray]:
    import insightface
    from skimage import data

    images = Path(insightface.__file__).parent / "data" / "images"
    square = np.zeros((512, 512, 3), np.uint8)
    square[150:250, 200:300] = 255
    return [data.astronaut(), np.asarray(Image.open(images / "t1.jpg").convert("RGB")), square]


def published_flow(app, rgb: np.ndarray) -> np.ndarray:
    """The authors' calls: get() per detector size until a face, then get() on the 2x crop."""
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    faces = []
    for size in range(640, 128, -128):
        app.det_model.input_size = (size, size)  # (a no-op on insightface >= 1.0, as published)
        faces = app.get(bgr)
        if faces:
            break
    image = Image.fromarray(rgb)
    landmarks = faces[0].landmark_2d_106
    pixels = clip_pixels(id_crop(image, landmarks))
    crop, _ = arcface_crop(image, landmarks)
    app.det_model.input_size = (640, 640)
    again = app.get(np.ascontiguousarray(np.asarray(crop)[:, :, ::-1]))
    _ = pixels
    return again[0].normed_embedding


def measure(fn, photos, repeat: int) -> tuple[float, float]:
    """(model runs per photo, median wall seconds per photo) after one warm-up pass."""
    for p in photos:
        fn(p)
    RUNS[0] = 0
    times = []
    for _ in range(repeat):
        for p in photos:
            t = time.perf_counter()
            fn(p)
            times.append(time.perf_counter() - t)
    return RUNS[0] / (repeat * len(photos)), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", FutureWarning)
    from insightface.app import FaceAnalysis

    with tempfile.TemporaryDirectory() as tmp:
        pack = write_tiny_face_pack(Path(tmp) / "models" / "antelopev2", extras=True)
        app = FaceAnalysis(name=str(pack), root=tmp, providers=["CPUExecutionProvider"])
        app.prepare(ctx_id=0, det_size=(640, 640))
        analyzer = FaceAnalyzer.load(pack, providers="cpu")
        _count_runs()
        photos = _photos()
        counts = [len(analyzer.detect(np.ascontiguousarray(p[:, :, ::-1])).faces) for p in photos]
        print(f"photos={len(photos)} sizes={[p.shape[1::-1] for p in photos]} faces={counts} "
              f"models_loaded published={len(app.models)} ours={len(analyzer.app.models)} "
              f"onnxruntime={onnxruntime.__version__} cpu_threads={os.cpu_count()}")  # fmt: skip
        base_runs, base_t = measure(lambda p: published_flow(app, p), photos, args.repeat)
        print(f"published          runs/photo={base_runs:5.2f}  wall/photo={base_t * 1e3:7.1f} ms  ratio=1.00")
        for label, kwargs in (("ours (faithful)", {}), ("ours (reuse_kps)", {"reuse_keypoints": True})):
            runs, t = measure(lambda p, kw=kwargs: prepare_id([p], analyzer, **kw), photos, args.repeat)
            print(f"{label:18s} runs/photo={runs:5.2f}  wall/photo={t * 1e3:7.1f} ms  "
                  f"ratio={t / base_t:.2f}  runs_ratio={runs / base_runs:.2f}")  # fmt: skip
            if label == "ours (faithful)":
                faithful_runs = runs
        print(f"onnx_runs_per_photo={faithful_runs:g}")


if __name__ == "__main__":
    main()
