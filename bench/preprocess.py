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

Wall times: interleaved rounds, each a pass over all photos per flow; ratios are medians of per-round
ratios +- half their interquartile range (bench/_measure.py).

    python bench/preprocess.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnxruntime  # noqa: E402
from _measure import interleaved  # noqa: E402
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


def runs_per_photo(fn, photos) -> float:
    """ONNX model runs per photo of one pass over the photos."""
    RUNS[0] = 0
    for p in photos:
        fn(p)
    return RUNS[0] / len(photos)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
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
        flows = {
            "published": lambda: [published_flow(app, p) for p in photos],
            "ours (faithful)": lambda: [prepare_id([p], analyzer) for p in photos],
            "ours (reuse_kps)": lambda: [prepare_id([p], analyzer, reuse_keypoints=True) for p in photos],
        }
        runs = {
            "published": runs_per_photo(lambda p: published_flow(app, p), photos),
            "ours (faithful)": runs_per_photo(lambda p: prepare_id([p], analyzer), photos),
            "ours (reuse_kps)": runs_per_photo(lambda p: prepare_id([p], analyzer, reuse_keypoints=True), photos),
        }
        r = interleaved(flows, args.rounds, baseline="published")
        for label in flows:
            ratio = r.ratio(label).ratio_text() if label != "published" else "1"
            print(f"{label:18s} runs/photo={runs[label]:5.2f}  wall/photo={r.stat(label).median / len(photos) * 1e3:7.1f} ms  "
                  f"ratio={ratio}  runs_ratio={runs[label] / runs['published']:.2f}")  # fmt: skip
        print(f"onnx_runs_per_photo={runs['ours (faithful)']:g}")

if __name__ == "__main__":
    main()
